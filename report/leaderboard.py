"""Section: the leaderboard of each suite's leading run set, per dataset.

One run set per table: every row trained to the same profile on the same kind of machine. Each
row says how long it trained (epochs of the recipe's, optimizer steps), so a ranking between
rows of unequal budgets reads as what it is. Diverged, failed and did-not-train runs are counted
and listed, never dropped.
"""

from __future__ import annotations

from report.budget import collapsed_class, did_not_train, group_budget, untrained
from report.collect import Group, by_dataset
from report.doc import Bullets, Cell, Code, Heading, Section, Table, cell, text
from report.fmt import TOO_FEW, acc_cell, count, duration, interval, mega, pct
from report.runsets import RunSet
from report.stats import MIN_SEEDS, confidence

HEADERS = (
    "variant", "n", "diverged", "failed", "did not train", "test acc", "95% CI", "epochs",
    "optimizer steps", "top-1 err", "top-3 err", "top-5 err", "params", "FLOPs/ex",
    "train ex/s", "infer ex/s (bs 1024)", "infer ex/s (bs 1)", "wall/run", "optimizer, lr, batch",
)
NUMERIC = (False,) + (True,) * (len(HEADERS) - 1)


def ci_cell(values: list[float]) -> Cell:
    """The clipped 95% CI of the mean from MIN_SEEDS seeds on, else 'too few seeds to test'."""
    iv = confidence(values)
    if iv is None:
        return Cell(TOO_FEW if values else "–")
    return cell(iv[0], interval(iv))


def row(g: Group) -> tuple[Cell, ...]:
    a, vals = g.accuracy(), g.values()
    errs = [g.mean("metrics", f"top{k}_error") for k in (1, 3, 5)]
    params, flops = g.first("metrics", "params_trainable"), g.first("metrics", "flops_per_example")
    train = g.mean("timing", "train_examples_per_s")
    inf = [g.mean("timing", "inference_examples_per_s", bs) for bs in ("1024", "1")]
    wall = g.mean("timing", "wall_seconds")
    b = group_budget(g)
    dnt = len(untrained(g))
    return (
        Cell(g.label),
        cell(a["n"], str(a["n"])),
        cell(g.count("diverged"), str(g.count("diverged"))),
        cell(g.count("failed"), str(g.count("failed"))),
        cell(dnt, str(dnt)),
        *((cell(a["mean"], f"did not train ({acc_cell(a, vals, MIN_SEEDS)})"), Cell("–"))
          if vals and dnt == len(vals) else (cell(a["mean"], acc_cell(a, vals, MIN_SEEDS)),
                                            ci_cell(vals))),
        cell(b.epochs, b.epochs_text()),
        cell(b.steps, b.steps_text()),
        *(cell(e, pct(e)) for e in errs),
        cell(params, count(params)),
        cell(flops, mega(flops)),
        cell(train, count(train)),
        *(cell(x, count(x)) for x in inf),
        cell(wall, duration(wall)),
        Cell(recipe_text(g)),
    )


def recipe_text(g: Group) -> str:
    """What the group trained with: `adam 0.001, bs 128` (the lr an equal-terms pick chose)."""
    cfg = g.first("config") or {}
    if not cfg.get("optimizer"):
        return "–"
    return f"{cfg['optimizer']} {cfg.get('lr'):g}, bs {cfg.get('batch_size')}"


#: What each suite's leaderboard answers, by suite name (others: the suite's name).
REGIMES = {"variants": "as published", "equal-terms": "equal terms"}


def regime(rs: RunSet) -> str:
    return REGIMES.get(rs.suite, rs.suite)


def unfinished(groups: list[Group], class_names: tuple[str, ...] | None = None) -> list[tuple]:
    """One line per diverged, failed or did-not-train run of these groups."""
    items = []
    for g in groups:
        for r in sorted(g.records, key=lambda r: r["seed"]):
            if r["status"] == "ok" and not did_not_train(r):
                continue
            if r["status"] == "ok":
                what = (f"did not train: it predicts {collapsed_class(r, class_names)} for "
                        f"(almost) every test image, so its {pct(r['metrics'].get('test_acc'))} "
                        "is that class's share of the test set")
            elif r["status"] == "diverged":
                what = (f"diverged at epoch {r.get('diverged_epoch')}: "
                        f"{r.get('error') or 'no error recorded'}")
            else:
                what = f"failed: {r.get('error') or 'no error recorded'}"
            items.append(text(Code(g.label), f", seed {r['seed']} ({g.runset}), {what} (run ",
                              Code(r["run_id"]), ")"))
    return items


def class_names(ds: str) -> tuple[str, ...] | None:
    from bench.data import DATASETS

    return DATASETS[ds].class_names if ds in DATASETS else None


def runset_tables(sec: Section, rs: RunSet, groups: list[Group], title: str, anchor: str,
                  level: int = 3) -> None:
    """Per dataset: the table of one run set and the list of its runs that did not finish."""
    for ds, gs in by_dataset(groups).items():
        sec.add(Heading(level, f"{ds}{title}", f"{anchor}-{ds}"),
                Table(HEADERS, tuple(row(g) for g in gs), NUMERIC))
        bad = unfinished(gs, class_names(ds))
        if bad:
            sec.para(f"Runs of {ds} that did not finish or did not train:")
            sec.add(Bullets(tuple(bad)))


def leaderboard_section(main: list[tuple[RunSet, list[Group]]], many_devices: bool) -> Section:
    sec = Section("Leaderboard", "leaderboard")
    if not any(gs for _, gs in main):
        sec.para("No records of the variant suites yet.")
        return sec
    sec.para(
        "Per dataset, one table per regime, each from its suite's leading run set (its most "
        "complete profile; other run sets are in the appendix). **As published** (suite "
        "variants): each variant trained by its source's own recipe, which reproduces the "
        "source. **Equal terms** (suite equal-terms): every variant keeps its network (layers, "
        "output layer and the loss it needs, initial weights, input transform) and is trained "
        "by one shared recipe (Adam, constant lr, batch 128, 15 epochs) at the lr picked for "
        "it on a validation split held out of the training set (see Equal terms below), which "
        "compares the architectures. Never one ranking across datasets. "
        "One row per variant (and overrides), sorted by "
        "mean test accuracy. n: runs that finished; diverged and failed runs are counted beside "
        "it and listed below, never dropped, but only finished runs enter the statistics. Did "
        "not train: finished runs whose predictions collapsed onto one class (at least 95% of "
        "the test images), so their accuracy is that class's share of the test set. Test acc: "
        f"mean ± sample SD over seeds from {MIN_SEEDS} seeds on, below that each seed's value; "
        f"95% CI: Student-t interval of the mean, only from {MIN_SEEDS} seeds on, clipped to "
        "[0, 100]%. Epochs: trained of the planned (the recipe's, or the shared recipe's); "
        "optimizer steps = epochs × ⌈training "
        "images / batch size⌉ (every batch steps, the last one partial). Top-k error: the label "
        "is not among the k highest scores. FLOPs per example: forward pass, 2 per "
        "multiply-add. train ex/s: median over epochs of training examples per second over the "
        "timed steps only, mean over seeds; infer ex/s: forward passes at a fixed batch size "
        "after warm-up. Throughput and wall time compare only within one machine. d2l exercise "
        "runs are in their own section."
    )
    by_ds: dict[str, list[tuple[RunSet, list[Group]]]] = {}
    for rs, groups in main:
        for ds, gs in by_dataset(groups).items():
            by_ds.setdefault(ds, []).append((rs, gs))
    many = len(main) > 1
    if not many:
        sec.para("Run set ", Code(main[0][0].title(many_devices)), ".")
    for ds, sets in sorted(by_ds.items()):
        if many:
            sec.add(Heading(3, ds, f"leaderboard-{ds}"))
        for rs, gs in sets:
            title = f" — {regime(rs)} ({rs.title(many_devices)})" if many else ""
            anchor = "leaderboard" + (f"-{rs.suite}" if many else "")
            runset_tables(sec, rs, gs, title, anchor, level=4 if many else 3)
    return sec
