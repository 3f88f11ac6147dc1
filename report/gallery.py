"""Section: the figures of each suite's leading run set (one run set per figure), each with a
caption that says what its bars and bands mean."""

from __future__ import annotations

from pathlib import Path

from report import figures as F
from report.collect import Group, by_dataset, reference_group
from report.doc import Code, Figure, Heading, Section
from report.examples import confident_examples, pick_run
from report.runsets import RunSet
from report.significance import by_first_look
from report.stats import MIN_SEEDS


def _class_names(ds: str) -> tuple[str, ...]:
    from bench.data import DATASETS

    return DATASETS[ds].class_names if ds in DATASETS else tuple(str(i) for i in range(10))


def _examples(sec: Section, gs: list[Group], ds: str, results: Path, out_dir: Path,
              data_root: Path | None, tag: str = "") -> None:
    best = next(iter(by_first_look(gs)), None)  # the leaderboard's best
    if best is None:
        return
    run, why = pick_run(best, results)
    if run is None:
        sec.para(f"Most-confident-wrong and least-confident-correct images of {ds}: skipped, "
                 f"{why} (the weights stay on the machine that trained).")
        return
    try:
        ex = confident_examples(run, results, data_root or Path("data"))
    except Exception as e:  # noqa: BLE001 — missing data must not stop the report
        sec.para(f"Most-confident-wrong and least-confident-correct images of {ds}: skipped, "
                 f"the test data could not be loaded ({type(e).__name__}: {e}); fetch it with ",
                 Code("lenet-bench data"), ".")
        return
    path = F.examples_figure(ex, ds, out_dir, tag)
    sec.add(Figure(path, f"{ds}: the {ex.kind.count('wrong')} most confident wrong (top) and "
                         f"{ex.kind.count('correct')} least confident correct (bottom) test "
                         f"images of {best.label}, seed {run['seed']} (run {run['run_id']}); "
                         "p = softmax probability of the predicted class.",
                   f"{ds}: most confident wrong and least confident correct test images"))


def figures_section(main: list[tuple[RunSet, list[Group]]], results: Path, out_dir: Path,
                    data_root: Path | None, many_devices: bool = False) -> Section:
    sec = Section("Figures", "figures")
    if not any(g.ok for _, groups in main for g in groups):
        sec.para("No finished runs of the variant suites: no figures.")
        return sec
    for rs, groups in main:
        tag = f"-{rs.suite}" if len(main) > 1 else ""
        if len(main) > 1:
            sec.add(Heading(3, rs.name, f"figures-{rs.suite}"))
        sec.para("Run set ", Code(rs.title(many_devices)), ".")
        _runset_figures(sec, groups, results, out_dir, data_root, tag)
    return sec


def _runset_figures(sec: Section, groups: list[Group], results: Path, out_dir: Path,
                    data_root: Path | None, tag: str) -> None:
    colors = F.palette([g.label for g in groups])
    with F.style():
        p = F.pareto_figure(groups, out_dir, colors, tag)
        if p:
            sec.add(Heading(3, "Accuracy vs size and speed", f"fig-pareto{tag}"),
                    Figure(p, "Test accuracy (mean; bars: 95% CI over seeds, only from "
                              f"{MIN_SEEDS} seeds on, clipped to [0, 100]%) against trainable "
                              "parameters and training throughput; the dashed line joins the "
                              "Pareto-optimal variants (no other is both better and "
                              "smaller/faster).", "accuracy vs parameters and vs throughput"))
        p = F.curves_figure(groups, out_dir, colors, tag)
        if p:
            sec.add(Heading(3, "Training curves", f"fig-curves{tag}"),
                    Figure(p, "Test accuracy and training loss per epoch: mean over the "
                              "finished seeds, band ± 1 SD.", "training curves"))
        p = F.topk_figure(groups, out_dir, colors, tag)
        if p:
            sec.add(Heading(3, "Top-k error", f"fig-topk{tag}"),
                    Figure(p, "Top-1, top-3 and top-5 test error (mean, bars ± 1 SD over "
                              "seeds; log scale, zero drawn at 0.001%).", "top-k error"))
        sec.add(Heading(3, "Confusion matrices", f"fig-confusion{tag}"))
        for ds, gs in by_dataset(groups).items():
            best = next(iter(by_first_look(gs)), None)  # the leaderboard's best
            if best is None:
                continue
            ref = reference_group(gs)
            panels = [("best", best)] + ([("reference", ref)] if ref and ref is not best else [])
            p = F.confusion_figure(ds, panels, _class_names(ds), out_dir, tag)
            if p:
                sec.add(Figure(p, f"{ds}: confusion of the best variant and of the reference, "
                                  "summed over seeds, each row normalized to 100% of its true "
                                  "class.", f"{ds} confusion matrices"))
        sec.add(Heading(3, "Confident mistakes, unsure hits", f"fig-examples{tag}"))
        for ds, gs in by_dataset(groups).items():
            _examples(sec, gs, ds, results, out_dir, data_root, tag)
