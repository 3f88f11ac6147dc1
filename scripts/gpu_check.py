"""`make gpu-check OUT=DIR`: prove the CUDA path in one short run on a bare GPU machine.

The GPU machines this project can borrow last about 15 minutes, reach no registry and return at
most 8 files, so the check is ready before the machine is: what it needs travels in the pack
(`make gpu-pack`, carried as .gpu-pack) and what it proves comes back in 8 files. Within one
budget (default 480 s), each phase under its own cap:

1. refuse in one line, exit 2, where torch sees no GPU: before anything is installed;
2. install from the pack alone (pip --no-index --find-links; the project itself by
   PYTHONPATH), unpack the xz-compressed datasets into the cache layout and check their md5s;
3. the cuda tests (pytest -m cuda, JUnit XML);
4. `lenet-bench perf --device cuda` with CUDA graphs and 5 seeds packed;
5. profile full of suite variants on CUDA until the budget is spent (records are appended
   run by run, so a rerun on the same machine resumes), then stopped with Ctrl-C's signal;
6. summary.md: one page of what ran, what failed, and how fast.

Files in OUT (8): summary.md, setup.log, junit-cuda.xml, pytest-cuda.log, perf-cuda.json,
perf-cuda.log, runs-full.jsonl, bench-full.log.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project by path: it is not pip-installed on a GPU machine
OUT_FILES = ("summary.md", "setup.log", "junit-cuda.xml", "pytest-cuda.log", "perf-cuda.json",
             "perf-cuda.log", "runs-full.jsonl", "bench-full.log")
BUDGET_S = 480  # the 8 minutes, from start to summary
TESTS_CAP_S = 240
PERF_CAP_S = 150
SUMMARY_RESERVE_S = 15  # kept back for the summary and copying files
MIN_BENCH_S = 30  # below this, the profile-full phase is skipped (and the summary says so)
DEVICE = "cuda"
# One convolutional variant: each lever compiles (tens of seconds on a cold cache), and the
# record must be written inside PERF_CAP_S.
PERF_ARGS = ["--variants", "lenet_d2l", "--set", "cuda_graphs=true", "--pack", "5",
             "--rounds", "3", "--steps", "100"]
SUITE, PROFILE = "variants", "full"
BENCH_ARGS: list[str] = []  # extra `lenet-bench run` arguments (a rehearsal narrows the plan)


def why_no_cuda() -> str | None:
    """None where torch sees a GPU; else the one-line reason."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 — any import failure means no CUDA here
        return f"no CUDA device: {sys.executable} cannot import torch ({type(e).__name__})"
    if not torch.cuda.is_available():
        return f"no CUDA device: torch {torch.__version__} sees no GPU ({sys.executable})"
    return None


@dataclass
class Phase:
    name: str
    rc: int | None  # None: not run
    seconds: float = 0.0
    capped: bool = False  # stopped at its time cap
    note: str = ""

    @property
    def result(self) -> str:
        if self.rc is None:
            return f"not run: {self.note}" if self.note else "not run"
        if self.capped:
            return f"stopped at its {self.note} cap"
        if self.rc == 0:
            return f"ok ({self.note})" if self.note else "ok"
        return f"exit {self.rc}" + (f" ({self.note})" if self.note else "")


class Check:
    """The phases, their logs (in a work folder) and the deadline."""

    def __init__(self, out: Path, pack: Path, work: Path, budget_s: float) -> None:
        self.out, self.pack, self.work = out, pack, work
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s
        self.budget_s = budget_s
        self.phases: list[Phase] = []
        self.data_root = work / "data"
        self.results = work / "results"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        self.setup_log = work / "setup.log"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        with self.setup_log.open("a") as f:
            f.write(text.rstrip("\n") + "\n")

    def run(self, name: str, cmd: list[str], log: Path, cap: float) -> Phase:
        """Run `cmd` with output to `log`; at `cap` seconds send SIGINT (records and JUnit get
        written), then kill after 30 s."""
        t = time.monotonic()
        with log.open("w") as f:
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            p = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=f,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            capped = False
            try:
                rc = p.wait(timeout=max(cap, 1))
            except subprocess.TimeoutExpired:
                capped = True
                p.send_signal(signal.SIGINT)
                try:
                    rc = p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    rc = p.wait()
        phase = Phase(name, rc, time.monotonic() - t, capped, f"{cap:.0f} s" if capped else "")
        self.phases.append(phase)
        return phase

    # --- setup ------------------------------------------------------------------------------

    def setup(self) -> bool:
        """Install from the pack, unpack the data; False when the data cannot be had."""
        t = time.monotonic()
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        self.log(f"python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}"
                 f"; CUDA {torch.version.cuda}; GPU {gpu}")
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv"], capture_output=True, text=True, timeout=60)
            self.log(smi.stdout + smi.stderr)
        note = self._install()
        ok = self._data()
        if not ok:
            note = "; ".join(n for n in (note, "the datasets did not verify") if n)
        self.phases.append(Phase("setup: install from the pack, unpack the data",
                                 0 if ok else 1, time.monotonic() - t, note=note))
        return ok

    def _pip(self, *args: str) -> int:
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-index", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        self.log(f"$ {shlex.join(cmd)}\n{p.stdout}{p.stderr}exit {p.returncode}")
        return p.returncode

    def _install(self) -> str:
        """Resolve the project's requirements against the image and the pack's wheels, offline;
        where pip cannot, install the pack's wheels the image lacks, unresolved. Returns a note
        for the summary ('' when resolved): a failure here is not fatal, the tests will say."""
        reqs, wheels = self.pack / "requirements.txt", self.pack / "wheels"
        if not reqs.is_file():
            self.log(f"no {reqs}: nothing installed (make gpu-pack makes it)")
            return "no pack requirements: nothing installed"
        if self._pip("--find-links", str(wheels), "-r", str(reqs)) == 0:
            return ""
        import importlib.metadata as md

        def installed(whl: Path) -> bool:
            try:
                md.version(whl.name.split("-")[0])
            except md.PackageNotFoundError:
                return False
            return True

        lacking = [str(w) for w in sorted(wheels.glob("*.whl")) if not installed(w)]
        if lacking:
            self._pip("--no-deps", *lacking)
        return "pip could not resolve the requirements offline (setup.log); the pack's " \
               f"{len(lacking)} wheels the image lacked were installed without resolving"

    def _data(self) -> bool:
        from bench.data import DATASETS, resolve_data_root, verify_dataset

        packed = sorted((self.pack / "data").glob("*/raw/*.xz"))
        if packed:
            for xz in packed:
                raw = self.data_root / xz.relative_to(self.pack / "data").with_suffix("")
                raw.parent.mkdir(parents=True, exist_ok=True)
                raw.write_bytes(lzma.decompress(xz.read_bytes()))
            root = self.data_root
        else:  # a CUDA workstation: its own verified cache will do
            root = resolve_data_root(None)
            self.log(f"no data in {self.pack}; using {root}")
        status = {n: verify_dataset(n, root) for n in DATASETS}
        self.log("\n".join(f"{n}: {f}: {s}" for n, st in status.items() for f, s in st.items()))
        self.env["LENET_BENCH_DATA"] = str(root)
        return all(s == "ok" for st in status.values() for s in st.values())

    # --- phases -----------------------------------------------------------------------------

    def tests(self) -> Phase:
        cmd = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-m", "cuda", "-v", "-ra",
               "-p", "no:cacheprovider", "--durations=10",
               f"--junitxml={self.work / 'junit-cuda.xml'}"]
        if _importable("pytest_timeout"):
            cmd += ["--timeout", "180"]  # one hung test must not eat the whole budget
        cap = min(TESTS_CAP_S, self.left() - SUMMARY_RESERVE_S - MIN_BENCH_S)
        return self.run("cuda tests (pytest -m cuda)", cmd, self.work / "pytest-cuda.log", cap)

    def perf(self) -> Phase:
        out = self.work / "perf"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "bench", "perf", "--device", DEVICE, *PERF_ARGS,
               "--out", str(out)]
        cap = min(PERF_CAP_S, self.left() - SUMMARY_RESERVE_S - MIN_BENCH_S)
        phase = self.run("perf --device cuda, CUDA graphs, 5 seeds packed", cmd,
                         self.work / "perf-cuda.log", cap)
        found = sorted(out.glob("perf-*.json"))
        if found:
            shutil.copyfile(found[-1], self.work / "perf-cuda.json")
        return phase

    def bench(self) -> Phase:
        cap = self.left() - SUMMARY_RESERVE_S
        name = f"profile {PROFILE} of suite {SUITE} on {DEVICE} (time-capped)"
        if cap < MIN_BENCH_S:
            phase = Phase(name, None, note=f"{max(cap, 0):.0f} s left of the budget")
            self.phases.append(phase)
            return phase
        cmd = [sys.executable, "-m", "bench", "run", "--suite", SUITE, "--profile", PROFILE,
               "--device", DEVICE, "--results", str(self.results), "--quiet", *BENCH_ARGS]
        phase = self.run(name, cmd, self.work / "bench-full.log", cap)
        runs = self.results / SUITE / PROFILE / "runs.jsonl"
        if runs.is_file():
            shutil.copyfile(runs, self.work / "runs-full.jsonl")
        return phase

    # --- summary ----------------------------------------------------------------------------

    def summary(self) -> str:
        import torch

        from bench.env import environment

        env = environment(DEVICE)
        wall = time.monotonic() - self.t0
        lines = [
            f"# gpu-check: {env['device_name']}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
            f"torch {torch.__version__}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Python "
            f"{env['python']}, {env['cpu_count']} CPUs; commit {env['git_commit'] or '?'}"
            f"{' (dirty)' if env['git_dirty'] else ''}. Wall {wall:.0f} s of a "
            f"{self.budget_s:.0f} s budget.", "",
            "| phase | result | seconds |", "| --- | --- | ---: |",
            *[f"| {p.name} | {p.result} | {p.seconds:.0f} |" for p in self.phases], "",
        ]
        lines += _tests_section(self.work / "junit-cuda.xml")
        lines += _perf_section(self.work / "perf-cuda.json")
        lines += _bench_section(self.work / "runs-full.jsonl")
        lines += ["## Files", "", ", ".join(f for f in OUT_FILES if f == "summary.md"
                                             or (self.work / f).is_file()) + "."]
        return "\n".join(lines) + "\n"

    def deliver(self) -> None:
        """summary.md and the other files into OUT; a summary that cannot be made still
        leaves a page saying why, and the logs."""
        try:
            text = self.summary()
        except Exception as e:  # noqa: BLE001 — the logs must come back whatever broke here
            text = (f"# gpu-check\n\nThe summary failed ({type(e).__name__}: {e}); phases: "
                    + "; ".join(f"{p.name}: {p.result}" for p in self.phases) + "\n")
        (self.work / "summary.md").write_text(text)
        self.out.mkdir(parents=True, exist_ok=True)
        for name in OUT_FILES:
            if (self.work / name).is_file():
                shutil.copyfile(self.work / name, self.out / name)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _tests_section(junit: Path) -> list[str]:
    if not junit.is_file():
        return ["## CUDA tests", "", "No JUnit XML: the test phase did not finish; see "
                "pytest-cuda.log.", ""]
    cases = ET.parse(junit).getroot().iter("testcase")
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    notes: list[str] = []
    skips: dict[str, list[str]] = {}  # reason → tests: one line per reason
    for c in cases:
        name = c.get("name", "?")
        bad = c.find("failure")
        if bad is None:
            bad = c.find("error")
        skip = c.find("skipped")
        if bad is not None:
            counts["failed"] += 1
            msg = (bad.get("message") or "").splitlines()[0][:160] if bad.get("message") else ""
            notes.append(f"- FAILED {name}: {msg}")
        elif skip is not None:
            counts["skipped"] += 1
            skips.setdefault((skip.get("message") or "")[:200], []).append(name)
        else:
            counts["passed"] += 1
    head = ", ".join(f"{v} {k}" for k, v in counts.items())
    notes += [f"- skipped {', '.join(names) if len(names) <= 3 else f'{len(names)} tests'}: "
              f"{why}" for why, names in skips.items()]
    return ["## CUDA tests", "", f"{head}.", *notes, ""]


def _perf_section(path: Path) -> list[str]:
    if not path.is_file():
        return ["## perf", "", "No perf record: see perf-cuda.log.", ""]
    rec = json.loads(path.read_text())
    levers = ", ".join(f"{k}={v}" for k, v in rec["levers"].items()) or "none"
    lines = ["## perf (training examples/s, medians of "
             f"{rec['rounds']} rounds of {rec['steps']} steps; levers: {levers})", "",
             "| variant | usual loop | engine | + CUDA graphs | packed aggregate | packed ÷ usual "
             "| fallback |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rec["rows"]:
        packed = r.get("packed_aggregate_examples_per_s")
        ratio = r.get("packed_vs_usual") or {}
        lines.append(
            f"| {r['variant']} | {r['usual_loop_examples_per_s']:,.0f} | "
            f"{r['engine_plain_examples_per_s']:,.0f} | {r['engine_examples_per_s']:,.0f} | "
            + ("–" if packed is None else f"{packed:,.0f} (K={r['packed_members']})")
            + f" | {ratio.get('median', float('nan')):.2f}× | {r.get('fallback') or '–'} |")
    return [*lines, ""]


def _bench_section(path: Path) -> list[str]:
    from bench.suites import expand, get_profile, load_suite

    plan = expand(load_suite(SUITE), get_profile(PROFILE), device=DEVICE)
    if not path.is_file():
        return [f"## profile {PROFILE}", "", f"No records: none of the {len(plan)} runs finished; "
                "see bench-full.log.", ""]
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in recs:
        groups.setdefault((r["variant"], r["dataset"]), []).append(r)
    lines = [f"## profile {PROFILE} of suite {SUITE}: {len(recs)} of {len(plan)} runs "
             "recorded", "",
             "| variant | dataset | seeds | epochs | status | test acc (mean) | train ex/s per "
             "run | packed | peak MiB | wall s |",
             "| --- | --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: |"]
    wall_total = 0.0
    for (variant, dataset), rs in groups.items():
        t = rs[0]["timing"]
        accs = [r["metrics"]["test_acc"] for r in rs if r["status"] == "ok"]
        wall = t.get("packed_wall_seconds") or sum(r["timing"].get("wall_seconds", 0)
                                                   for r in rs)
        wall_total += wall
        eps = t.get("train_examples_per_s")
        cells = [variant, dataset, ",".join(str(r["seed"]) for r in rs),
                 str(rs[0]["config"]["num_epochs"]),
                 ",".join(sorted({r["status"] for r in rs})),
                 f"{statistics.fmean(accs):.4f}" if accs else "–",
                 "–" if eps is None else f"{eps:,.0f}",
                 "yes" if rs[0].get("packed_seeds") else "no",
                 "–" if t.get("peak_gpu_memory_bytes") is None
                 else f"{t['peak_gpu_memory_bytes'] / 2**20:,.0f}", f"{wall:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    done = {r["run_id"] for r in recs}
    left = sorted({f"{p.config.variant}/{p.config.dataset}" for p in plan
                   if p.run_id not in done})
    lines += ["", f"Training wall of what was recorded: {wall_total:.0f} s."]
    if left:
        lines += [f"Not reached within the budget ({len(plan) - len(done)} runs): "
                  f"{', '.join(left)}."]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=None, help="folder for the 8 files (or $OUT)")
    ap.add_argument("--pack", default=str(REPO / ".gpu-pack"))
    ap.add_argument("--work", default=os.environ.get("GPU_CHECK_WORK",
                                                     "/tmp/lenet-bench-gpu-check"),
                    help="logs, data and records (a rerun resumes profile full from here)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S)
    ap.add_argument("--why-not", action="store_true",
                    help="print why this machine cannot run the check (nothing if it can)")
    args = ap.parse_args(argv)
    why = why_no_cuda()
    if args.why_not:
        print(why or "")
        return 0
    if why:
        print(f"gpu-check: {why}; run it on a GPU machine with .gpu-pack (make gpu-pack)",
              file=sys.stderr)
        return 2
    out = args.out or os.environ.get("OUT")
    if not out:
        print("gpu-check: error: give the folder for the results: make gpu-check OUT=DIR",
              file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES:  # this run's files only (records stay under work/results)
        (work / name).unlink(missing_ok=True)
    check = Check(Path(out).absolute(), Path(args.pack), work, args.budget_s)
    try:
        if check.setup():
            check.tests()
            check.perf()
            check.bench()
    finally:
        check.deliver()
    print((check.out / "summary.md").read_text())
    bad = [p for p in check.phases if p.rc not in (0, None) and not p.capped]
    return 1 if bad or not check.phases or check.phases[0].rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
