"""`python -m bench` is the same as the `lenet-bench` console script."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
