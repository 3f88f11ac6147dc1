"""Recompute the `code` block of committed run records under the current fingerprint probe.

Used once, when the probe moved to its fixed portable kernel set (probe v2, bench/fingerprint.py):
records fingerprinted by probe v1 named the kernels of the CPU that made them, so an AVX2-only
CPU could not recognise records made on an AVX-512 one. Only the `code` block of a record
changes; every other byte of the record (config, metrics, history, timing, env) stays, which
this script checks before it replaces a file, and tests/test_fingerprint.py checks against the
files as they were committed before.

A record is re-fingerprinted only when the v1 check recognised it as this code's (run with the
v1 code of `--v1-tree` on this CPU), or when it names no AVX2/scalar kernel set and so could
not be checked on this CPU, with `--trust-unverifiable` (a person vouches that it was verified
on its own CPU: see the commit message and README). Records the v1 check rejects on its own
kernels keep their v1 block and are retrained by `lenet-bench run`.

    python scripts/refingerprint.py --v1-tree /tmp/old results/*/reference/runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

V1_CHECK = r"""
import json, sys
from pathlib import Path
import bench.fingerprint as fp
from bench.config import config_from_record
ask = json.load(sys.stdin)
root = Path(ask["data_root"])
recs = ask["records"]
items = [(config_from_record(r["config"]), r) for r in recs]
ok = fp.made_by_this_code(items, root)
checkable = fp.KERNEL_SETS[fp.KERNEL_SETS.index(fp.kernel_set()):]
out = []
for r, yes in zip(recs, ok):
    k = fp.record_kernel_set(r)
    out.append("this" if yes else ("other" if k in checkable else "unverifiable"))
json.dump(out, sys.stdout)
"""


def v1_verdicts(tree: Path, records: list[dict], data_root: Path) -> list[str]:
    """this / other / unverifiable per record, by the v1 check of the code in `tree`."""
    out = subprocess.run([sys.executable, "-c", V1_CHECK], cwd=tree, text=True, check=True,
                         input=json.dumps({"data_root": str(data_root), "records": records}),
                         capture_output=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin"})
    return list(json.loads(out.stdout))


def without_code(rec: dict) -> str:
    return json.dumps({k: v for k, v in rec.items() if k != "code"}, sort_keys=True)


def main() -> int:
    from bench.config import config_from_record
    from bench.fingerprint import VERSION, code_block, fingerprints, record_probe_version
    from bench.fsio import atomic_write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--v1-tree", type=Path, required=True,
                    help="a checkout of the code the v1 fingerprints are checked with")
    ap.add_argument("--trust-unverifiable", action="store_true")
    ap.add_argument("--data-root", type=Path, default=REPO / "data")
    args = ap.parse_args()
    for path in args.files:
        lines = path.read_text().splitlines()
        recs = [json.loads(line) for line in lines]
        old = [i for i, r in enumerate(recs) if r.get("code") and record_probe_version(r) < VERSION]
        said = v1_verdicts(args.v1_tree, [recs[i] for i in old], args.data_root)
        take = [i for i, v in zip(old, said, strict=True)
                if v == "this" or (v == "unverifiable" and args.trust_unverifiable)]
        cfgs = {i: config_from_record(recs[i]["config"]) for i in take}
        fingerprints(list(cfgs.values()), args.data_root)  # one probe process for the file
        new = [dict(r) for r in recs]
        for i in take:
            new[i]["code"] = code_block(cfgs[i], args.data_root)
        assert [without_code(a) for a in recs] == [without_code(b) for b in new]
        atomic_write(path, "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n"
                                   for r in new))
        counts = {v: said.count(v) for v in ("this", "unverifiable", "other")}
        print(f"{path}: {len(recs)} records, {len(old)} of probe v1 {counts}: "
              f"{len(take)} re-fingerprinted", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
