"""`make gpu-pack`: gather here what `make gpu-check` needs on a GPU machine with no registry.

The GPU machines this project can borrow are bare (Python 3.12, torch 2.11, torchvision 0.26
and most of our dependencies), reach no registry, and receive at most 64 MiB: the working tree
plus the folders a call carries. So the check installs from this folder alone:

    .gpu-pack/data/<Folder>/raw/<file>.xz   the raw IDX files `lenet-bench data` fetched and
                                            verified (SPEC md5s), xz-compressed (35 MiB
                                            where gzip made 41: with the 27 MiB tree, gzip's
                                            pack would not travel), in the cache layout
    .gpu-pack/wheels/*.whl                  Python 3.12 manylinux x86-64 wheels: what the image
                                            lacks, plus a few tiny pure-Python ones as insurance
    .gpu-pack/requirements.txt              what the check resolves, --no-index, against the
                                            image and these wheels
    .gpu-pack/MANIFEST.md                   every file, its size and sha256; what was left out

It exits 1, saying why, if the folder is over 60 MiB or if it and the working tree that travels
with it are over the 64 MiB a device call carries. Run it again at will: verified data and
wheels already there are kept, stale wheels are removed (two versions of one stop an install).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import lzma
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.data import DATASETS, resolve_data_root, verify_dataset  # noqa: E402
from bench.idx import md5_bytes  # noqa: E402

MIB = 2**20
PACK_CAP = 60 * MIB
TRAVEL_CAP = 64 * MIB  # what one device call carries: working tree + carried folders

# Python packages of the GPU machines' image ('cuda'), as listed on 2026-11-17 (the device
# notes' KINDS.md). A dependency named here is not packed: the image has it.
IMAGE = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo
pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests
rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# Tiny pure-Python dependencies carried even though the image lists them (under 0.5 MB in
# all): if the image ever drops one, the check still installs.
INSURANCE = ("tabulate", "tqdm", "filelock", "seaborn")

# Optional extras the check does not carry, and why (said in MANIFEST.md).
LEFT_OUT = {
    "ray": "79 MB wheel (2.60, cp312): more than a device call carries (64 MiB); the Ray "
           "test skips on the GPU machine, saying so",
    "mlflow": "only `lenet-bench export --to mlflow` uses it; the check does not",
    "ruff": "lint only",
}

PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64"]


class PackError(Exception):
    """A problem the user fixes (one line): no data, a failed download, over the size cap."""


def norm(name: str) -> str:
    """PEP 503 name: what pip compares."""
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(req: str) -> str:
    return norm(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0])


def wheel_name(path: Path) -> str:
    return norm(path.name.split("-")[0])


def requirements() -> list[str]:
    """The project's own dependencies and pytest: what the check resolves on the machine."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dev = [r for r in project["optional-dependencies"]["dev"] if req_name(r) == "pytest"]
    return [*project["dependencies"], *dev]


def pack_data(pack: Path, root: Path) -> list[Path]:
    """Compress (xz) every verified raw file into pack/data, in the cache layout; keep good
    ones, drop any other file there (an older pack's .gz would travel too)."""
    out = []
    for name, info in DATASETS.items():
        bad = {f: s for f, s in verify_dataset(name, root).items() if s != "ok"}
        if bad:
            raise PackError(f"{name} under {root} is not ready ({bad}); run make data first")
        for fname, want in info.files.items():
            xz = pack / "data" / info.folder / "raw" / f"{fname}.xz"
            if not (xz.is_file() and md5_bytes(lzma.decompress(xz.read_bytes())) == want):
                xz.parent.mkdir(parents=True, exist_ok=True)
                raw = (info.raw_dir(root) / fname).read_bytes()
                tmp = xz.with_suffix(".tmp")
                tmp.write_bytes(lzma.compress(raw, preset=9))
                tmp.replace(xz)
                print(f"gpu-pack: {xz.relative_to(pack)} written")
            out.append(xz)
    for stale in sorted(set((pack / "data").rglob("*")) - set(out)):
        if stale.is_file():
            stale.unlink()
            print(f"gpu-pack: {stale.relative_to(pack)} removed (not in this pack)")
    return out


def pinned(name: str) -> str:
    """`name==version` at the version installed here, the one this checkout is tested with."""
    try:
        return f"{name}=={md.version(name)}"
    except md.PackageNotFoundError:
        return name


def download(specs: list[str], dest: Path, *, deps: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
           *PLATFORM, "-d", str(dest), *([] if deps else ["--no-deps"]), *specs]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        err = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR")] or \
            p.stderr.strip().splitlines()[-1:]
        raise PackError(f"pip download {' '.join(specs)} failed: {' | '.join(err)}")


def have_wheel(dest: Path, spec: str) -> bool:
    name, _, version = spec.partition("==")
    return any(wheel_name(w) == norm(name) and w.name.split("-")[1] == version
               for w in dest.glob("*.whl"))


def pack_wheels(pack: Path, reqs: list[str]) -> tuple[list[Path], list[str]]:
    """Wheels of what the image lacks (with their own missing dependencies) and INSURANCE;
    returns (wheels, names the image lacks)."""
    dest = pack / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    missing = [req_name(r) for r in reqs if req_name(r) not in IMAGE]
    want = [pinned(n) for n in missing]
    todo = [s for s in want if not have_wheel(dest, s)]
    if todo:
        download(todo, dest, deps=True)
    extra = [pinned(n) for n in INSURANCE if n not in missing]
    todo = [s for s in extra if not have_wheel(dest, s)]
    if todo:
        download(todo, dest, deps=False)
    keep = {req_name(s): s.partition("==")[2] for s in want + extra}
    for w in sorted(dest.glob("*.whl")):
        name, version = wheel_name(w), w.name.split("-")[1]
        if name in keep:
            stale = keep[name] not in ("", version)  # an older pin
        else:  # a dependency pulled in: kept only if the image lacks it and something needs it
            stale = name in IMAGE or not missing
        if stale:
            w.unlink()
            print(f"gpu-pack: removed {w.name} (the image has it, or a stale version)")
    return sorted(dest.glob("*.whl")), missing


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def travelling_bytes() -> int | None:
    """Bytes of the working tree a device call sends (tracked and untracked-not-ignored
    files), or None where git cannot say."""
    try:
        p = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    files = [REPO / f for f in p.stdout.decode().split("\0") if f]
    return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())


def write_manifest(pack: Path, files: list[Path], reqs: list[str], missing: list[str]) -> None:
    lines = ["# gpu-pack manifest", "",
             "Made by `make gpu-pack` for `make gpu-check` (Python 3.12 manylinux x86-64).", "",
             f"Image lacks, of what the check needs: {', '.join(missing) or 'nothing'}.",
             "Carried anyway (tiny, pure Python): " + ", ".join(INSURANCE) + ".", "",
             "Left out:", *[f"- {k}: {v}" for k, v in LEFT_OUT.items()], "",
             "Requirements resolved on the machine: " + "; ".join(reqs), "",
             "| file | bytes | sha256 |", "| --- | ---: | --- |"]
    lines += [f"| {f.relative_to(pack)} | {f.stat().st_size} | {sha256(f)} |" for f in files]
    (pack / "MANIFEST.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu-pack", description=__doc__.splitlines()[0])
    ap.add_argument("--pack", default=str(REPO / ".gpu-pack"), help="default .gpu-pack")
    ap.add_argument("--data-root", default=None, help="default ./data or $LENET_BENCH_DATA")
    args = ap.parse_args(argv)
    pack = Path(args.pack)
    try:
        pack.mkdir(parents=True, exist_ok=True)
        data = pack_data(pack, resolve_data_root(args.data_root))
        reqs = requirements()
        wheels, missing = pack_wheels(pack, reqs)
        (pack / "requirements.txt").write_text("\n".join(reqs) + "\n")
        write_manifest(pack, data + wheels, reqs, missing)
        size = sum(f.stat().st_size for f in pack.rglob("*") if f.is_file())
        if size > PACK_CAP:
            raise PackError(f"{pack} is {size / MIB:.1f} MiB, over its {PACK_CAP // MIB} MiB "
                            "cap: see MANIFEST.md for what is in it")
        tree = travelling_bytes()
        if tree is not None and tree + size > TRAVEL_CAP:
            raise PackError(f"the working tree ({tree / MIB:.1f} MiB, tracked and untracked "
                            f"files git does not ignore) plus {pack.name} ({size / MIB:.1f} "
                            f"MiB) is over the {TRAVEL_CAP // MIB} MiB a device call carries")
    except PackError as e:
        print(f"gpu-pack: error: {e}", file=sys.stderr)
        return 1
    total = "" if tree is None else f"; with the working tree {(tree + size) / MIB:.1f} MiB " \
        f"travels (cap {TRAVEL_CAP // MIB} MiB)"
    print(f"gpu-pack: {pack} ready: {size / MIB:.1f} MiB ({len(data)} data files, "
          f"{len(wheels)} wheels){total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
