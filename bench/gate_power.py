"""`lenet-bench gate-power`: how much the CI gate catches, measured by planting regressions.

Each mutant is one small, realistic bug (a wrong optimizer setting, a lost shuffle, a missing
normalization step, a dropped layer, …) written as an exact text replacement in one file; the
"too good" class raises accuracy instead (evaluation on the training set, a test subset, test
images leaked into training), which a lower bound alone never sees. For
each, a fresh temporary copy of the project gets that one edit and runs the gate there
(`check --profile gate`, trained afresh, against this checkout's thresholds); a mutant whose
target text is no longer in the code is reported as stale, never as caught. An unmutated copy
runs first: it must pass (no false alarm). Nothing here changes this checkout.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.env import REPO, environment
from bench.errors import UsageError
from bench.fsio import atomic_write

COPIED = ("bench", "variants", "report")  # what a gate run imports


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # what the issue asks to cover: optimizer, schedule, data order, …
    path: str  # relative to the repository root
    old: str  # must occur exactly once, else the mutant is stale
    new: str
    why: str  # the bug it stands for
    too_good: bool = False  # it raises the reported accuracy (evaluation data, a leak)


MUTANTS: tuple[Mutant, ...] = (
    Mutant("lr-slip", "optimizer hyperparameters", "bench/engine.py",
           '            group["lr"] = lr\n', '            group["lr"] = lr * 0.1\n',
           "every step uses a tenth of the scheduled learning rate (a unit slip). (An earlier "
           "mutant set Adam's initial lr, which the schedule overwrites each epoch: it changed "
           "nothing, so it measured nothing)"),
    Mutant("sgd-weight-decay", "optimizer hyperparameters", "bench/engine.py",
           "params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **impl",
           "params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=5e-3, **impl",
           "SGD gets a weight decay of 5e-3 the recipes do not have (a stray default)"),
    Mutant("no-zero-grad", "optimizer hyperparameters", "bench/engine.py",
           "        self.opt.zero_grad(set_to_none=True)\n", "",
           "gradients are never cleared: every step adds all earlier gradients"),
    Mutant("schedule-decays", "learning-rate schedule", "bench/loop.py",
           'if cfg.schedule == "constant":\n        return cfg.lr',
           'if cfg.schedule == "constant":\n        return cfg.lr * 0.5**epoch',
           "the constant schedule halves the learning rate every epoch"),
    Mutant("no-shuffle", "data order", "bench/engine.py",
           "self.perm = torch.randperm(n, generator=self.gen).to(self.device)",
           "self.perm = torch.arange(n).to(self.device)",
           "training batches in file order every epoch (shuffling lost)"),
    Mutant("half-batches", "data order", "bench/engine.py",
           "idx = self.perm[i * bs : (i + 1) * bs]",
           "idx = self.perm[i * bs : i * bs + bs // 2]",
           "each step reads only the first half of its batch (half the data is never seen)"),
    Mutant("std-forgotten", "normalization", "bench/resident.py",
           'x = (x - float(transform["mean"])) / float(transform["std"])',
           'x = x - float(transform["mean"])',
           "normalization subtracts the mean but no longer divides by the std"),
    Mutant("pad-one-side", "input geometry", "bench/resident.py",
           "x = F.pad(x, (p, size - x.shape[-1] - p, p, size - x.shape[-2] - p), value=0.0)",
           "x = F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]), value=0.0)",
           "28→32 padding all on the right and bottom: digits shifted off-centre"),
    Mutant("class-9-merged", "label handling", "bench/engine.py",
           "X, y = self.train.X[idx], self.train.y[idx]",
           "X, y = self.train.X[idx], self.train.y[idx].clamp(max=8)",
           "training labels clamped to 0–8: class 9 is taught as class 8 (an off-by-one class "
           "count in the training step). (Clamping where both splits are loaded relabels the "
           "test set alike and raises accuracy: not a regression an accuracy gate can see)"),
    Mutant("train-flip", "input geometry", "bench/engine.py",
           "X, y = self.train.X[idx], self.train.y[idx]",
           "X, y = self.train.X[idx].flip(-1), self.train.y[idx]",
           "training images mirrored left-right every step (an augmentation left always on), "
           "test images not"),
    Mutant("pixels-unscaled", "normalization", "bench/resident.py",
           "x = x_uint8.to(torch.float32).div_(255.0).unsqueeze(1)",
           "x = x_uint8.to(torch.float32).unsqueeze(1)",
           "pixels stay in 0–255 (the division by 255 lost)"),
    Mutant("eval-in-train-mode", "evaluation mode", "bench/metrics.py",
           "    model.eval()\n    scores_all, loss_sum = [], 0.0",
           "    scores_all, loss_sum = [], 0.0",
           "evaluation runs in training mode (BatchNorm uses the test batch's statistics)"),
    Mutant("xavier-gain", "initialization", "variants/init.py",
           " -> None:\n    nn.init.xavier_uniform_(m.weight)\n\n\ndef _xavier_zero_bias",
           " -> None:\n    nn.init.xavier_uniform_(m.weight, gain=0.1)\n\n\ndef _xavier_zero_bias",
           "Xavier-uniform init drawn ten times too small"),
    Mutant("nll-on-logits", "loss", "variants/registry.py",
           "    return F.cross_entropy(scores, y)", "    return F.nll_loss(scores, y)",
           "cross-entropy without its log-softmax (NLL on raw logits)"),
    Mutant("fc-activation-dropped", "one layer in a model", "variants/d2l_lenet.py",
           "hidden += [nn.Linear(width, int(h)), make_activation(activation)]",
           "hidden += [nn.Linear(width, int(h))]",
           "the d2l LeNets lose the activation of their hidden fully connected layers"),
    Mutant("cnn-avg-pool", "one layer in a model", "variants/fidle.py",
           "nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)",
           "nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)",
           "the fidle CNNs' first pooling becomes an average"),
    # The "too good" class: each raises the accuracy the records report.
    Mutant("eval-on-train-set", "evaluation data", "bench/engine.py",
           "return [evaluate(self.model, self.test, self.loss_fn",
           "return [evaluate(self.model, self.train, self.loss_fn",
           "the learner scores the training set as its test metrics (one word)", True),
    Mutant("test-subset-5000", "evaluation data", "bench/engine.py",
           "self.train, self.test = prepare_data(cfg, train), test\n",
           "self.train, self.test = prepare_data(cfg, train), DeviceData(test.X[:5000], "
           "test.y[:5000])\n",
           "the test set cut to its first 5,000 images, in silence (measured: on MNIST that "
           "half is the harder one for these nets, so accuracy falls; another subset raises "
           "it: the data contract sees either)", True),
    Mutant("test-leak-into-train", "train/test leak", "bench/engine.py",
           '    return (\n'
           '        device_data(cfg.dataset, "train", cfg.transform, device, data_root, '
           'cfg.train_subset),\n'
           '        device_data(cfg.dataset, "test", cfg.transform, device, data_root, '
           'cfg.test_subset),\n'
           '    )\n',
           '    tr = device_data(cfg.dataset, "train", cfg.transform, device, data_root, '
           'cfg.train_subset)\n'
           '    te = device_data(cfg.dataset, "test", cfg.transform, device, data_root, '
           'cfg.test_subset)\n'
           '    return DeviceData(torch.cat([tr.X, te.X]), torch.cat([tr.y, te.y])), te\n',
           "the test images (and labels) appended to the training data", True),
)


def _copy(dst: Path) -> Path:
    for name in COPIED:
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _gate(project: Path, results: Path, data_root: Path, thresholds: Path,
          timeout: float, variants: str | None = None) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    only = [] if variants is None else ["--variants", variants]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench", "check", "--suite", "variants", "--profile", "gate",
             "--results", str(results), "--data-root", str(data_root), "--thresholds",
             str(thresholds), "--quiet", *only],
            cwd=project, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "gate timed out", time.perf_counter() - t0
    return out.returncode, out.stdout + out.stderr, time.perf_counter() - t0


def _failing(output: str) -> list[str]:
    """The gate table's FAIL rows (variant, dataset, value, threshold, and the note when it
    is not the plain "below threshold"), or the error the gate died with."""
    rows = []
    for line in output.splitlines():
        parts = line.split()
        if "FAIL" not in parts[5:8] or line.startswith(("FAIL", "gate")):
            continue
        note = " ".join(parts[parts.index("FAIL") + 1:])
        rows.append(" ".join(parts[:2] + parts[3:5])
                    + (f" ({note})" if note and note != "below threshold" else ""))
    if rows:
        return rows
    tail = [ln for ln in output.strip().splitlines() if ln.strip()][-1:]
    return tail


#: How the notes of bench.contracts' failures begin (bench.gate.contract_problems).
CONTRACT_MARKS = ("inputs: ", "evaluation changed", "evaluation depends", "data: ",
                  "re-evaluation: ")


def caught_by(failing: list[str]) -> str:
    """What caught a mutant: accuracy (a row below its threshold or above its upper bound, or
    a failed run), the contracts of bench.contracts (inputs, evaluation, data), or both."""
    from bench.gate import TOO_GOOD

    def is_contract(f: str) -> bool:
        return any(m in f for m in CONTRACT_MARKS)

    contract = any(is_contract(f) for f in failing)
    accuracy = any(not is_contract(f) or "below threshold" in f or TOO_GOOD in f
                   for f in failing)
    return "both" if contract and accuracy else ("contract" if contract else "accuracy")


def run_one(mutant: Mutant | None, work: Path, data_root: Path, thresholds: Path,
            timeout: float, variants: str | None = None) -> dict[str, Any]:
    """Copy, mutate (None: the baseline), run the gate (on `variants` only, when given);
    returns the outcome."""
    project = _copy(work / "project")
    outcome: dict[str, Any] = {"mutant": None if mutant is None else mutant.name}
    if mutant is not None:
        path = project / mutant.path
        text = path.read_text()
        if text.count(mutant.old) != 1:
            return {**outcome, "result": "stale",
                    "detail": f"target text found {text.count(mutant.old)} times in "
                              f"{mutant.path}: update the mutant"}
        path.write_text(text.replace(mutant.old, mutant.new))
    rc, output, seconds = _gate(project, work / "results", data_root, thresholds, timeout,
                                variants)
    if mutant is None:
        result = "pass" if rc == 0 else "false alarm"
    else:
        result = "caught" if rc != 0 else "missed"
    failing = _failing(output) if rc != 0 else []
    out = {**outcome, "result": result, "exit": rc, "seconds": round(seconds, 1),
           "failing": failing, "output_tail": output[-3000:]}
    if result == "caught":
        out["caught_by"] = caught_by(failing)
    return out


def cmd_gate_power(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.data import ensure_dataset, resolve_data_root

    pats = [p.strip() for p in args.mutants.split(",") if p.strip()]
    chosen = [m for m in MUTANTS if any(fnmatch.fnmatchcase(m.name, p) for p in pats)]
    if not chosen:
        raise UsageError(f"no mutant matches {args.mutants!r}; mutants: "
                         f"{', '.join(m.name for m in MUTANTS)}")
    root = resolve_data_root(args.data_root).absolute()
    for ds in ("mnist", "fashion-mnist"):
        ensure_dataset(ds, root, log=lambda m: None)
    thresholds = Path(args.thresholds).absolute()
    outcomes = []
    todo: list[Mutant | None] = [None, *chosen]
    for i, m in enumerate(todo):
        label = "baseline (no mutation)" if m is None else m.name
        print(f"[{i + 1}/{len(todo)}] {label} …", flush=True)
        with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
            out = run_one(m, Path(tmp), root, thresholds, args.timeout, args.variants)
        outcomes.append(out)
        print(f"    {out['result']} ({out.get('seconds', 0)} s)"
              + (f": {'; '.join(out['failing'])}" if out.get("failing") else ""), flush=True)
    rows = [["baseline", "–", outcomes[0]["result"], "; ".join(outcomes[0]["failing"])]]
    for m, out in zip(chosen, outcomes[1:], strict=True):
        result = out["result"] + (f" ({out['caught_by']})" if out.get("caught_by") else "")
        rows.append([m.name, m.kind, result, out.get("detail") or "; ".join(out["failing"])])
    print(tabulate(rows, headers=["mutant", "kind", "result (by)", "gate's failing rows"],
                   tablefmt="simple"))
    judged = [o for o in outcomes[1:] if o["result"] in ("caught", "missed")]
    caught = sum(o["result"] == "caught" for o in judged)
    stale = sum(o["result"] == "stale" for o in outcomes[1:])
    by_acc = sum(o.get("caught_by") in ("accuracy", "both") for o in judged)
    good = {m.name for m in chosen if m.too_good}
    good_judged = [o for o in judged if o["mutant"] in good]
    good_caught = sum(o["result"] == "caught" for o in good_judged)
    print(f"caught {caught} of {len(judged)} mutants"
          + (f" ({100 * caught / len(judged):.0f}%; by accuracy {by_acc})" if judged else "")
          + (f"; too good: {good_caught} of {len(good_judged)}" if good_judged else "")
          + (f"; {stale} stale (their target text is gone: update them)" if stale else "")
          + f"; baseline: {outcomes[0]['result']}")
    record = {
        "kind": "gate-power", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "thresholds": str(thresholds), "caught": caught, "judged": len(judged),
        "variants": args.variants or "all",
        "stale": stale, "baseline": outcomes[0]["result"], "caught_by_accuracy": by_acc,
        "too_good_caught": good_caught, "too_good_judged": len(good_judged),
        "mutants": [asdict(m) for m in chosen], "outcomes": outcomes,
        "env": environment("cpu"),
    }
    if args.out:
        out_dir = Path(args.out)
        name = f"gate-power-{(record['env'].get('git_commit') or 'nogit')[:10]}-" \
               f"{record['when'].replace(':', '').replace('-', '')[:15]}.json"
        atomic_write(out_dir / name, json.dumps(record, indent=1, sort_keys=True))
        print(f"wrote {out_dir / name}")
    return 0 if outcomes[0]["result"] == "pass" and not stale else 1


def add_parser(sub: Any) -> None:
    from bench.thresholds import THRESHOLDS_FILE

    p = sub.add_parser("gate-power", help="plant regressions one at a time; how many does the "
                                          "gate catch (make gate-power)")
    p.add_argument("--mutants", default="*", metavar="PATTERN",
                   help="fnmatch patterns over mutant names, comma-separated (default all)")
    p.add_argument("--thresholds", default=str(THRESHOLDS_FILE), metavar="FILE")
    p.add_argument("--data-root", default=None)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per gate run")
    p.add_argument("--variants", default=None, metavar="PATTERN",
                   help="gate only these variants (check --variants; quicker, and the catch "
                   "rate then speaks for them alone)")
    p.add_argument("--out", default="results/gate-power", metavar="DIR",
                   help="where the JSON record goes ('' for none)")
