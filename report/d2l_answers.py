"""The d2l questions' verdicts: one per question and dataset, from paired per-seed differences.

Every level of a group trains with the same seeds, and a seed fixes the initialization draw and
the data order for all of them, so each level is compared with the group's reference level seed
by seed: the mean paired difference, its 95% t-interval and the paired t-test, Holm-corrected
over the family of the group's comparisons with that reference on that dataset. Below MIN_SEEDS
common seeds nothing is tested. A level whose every run collapsed onto one class "did not train"
and is neither ranked nor tested. The `epochs` group's levels are the epochs of its longest runs,
read from their per-epoch history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.config import overrides_label
from bench.sequential import Plateau
from report.budget import did_not_train
from report.collect import Record
from report.decisions import LOOKS, Decision, epochs_plateau, level_decisions
from report.fmt import TOO_FEW, level, level_key, pct, pp, pp_interval
from report.stats import MIN_SEEDS, Paired, holm, paired, summarize

EPOCHS_FACTOR = "num_epochs"


@dataclass
class Level:
    label: str
    order: tuple[Any, ...]
    records: list[Record] = field(default_factory=list)
    by_seed: dict[int, float] = field(default_factory=dict)  # finished seeds' test accuracy
    untrained: set[int] = field(default_factory=set)  # finished seeds that did not train

    @property
    def values(self) -> list[float]:
        return [self.by_seed[s] for s in sorted(self.by_seed)]

    @property
    def trained(self) -> bool:
        """Not every finished seed collapsed (a level without finished seeds is not ranked)."""
        return bool(self.by_seed) and len(self.untrained) < len(self.by_seed)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    def mean(self) -> float | None:
        return summarize(self.values)["mean"]


@dataclass
class Comparison:
    level: Level
    test: Paired
    p_holm: float | None = None
    decision: Decision | None = None  # the sequential rule's verdict (report.decisions)

    def verdict(self) -> str:
        """One of four: better, worse, equivalent within ±m, undecided after n seeds."""
        if self.decision is not None:
            return self.decision.words
        return "undecided after 0 seeds"


@dataclass(frozen=True)
class LevelPublished:
    """A source's own figure for one level, against our seeds of that level."""

    level: str
    published: float
    values: tuple[float, ...]
    pi: tuple[float, float] | None
    status: str
    verdict: str


@dataclass
class Question:
    """One group of one d2l suite on one dataset, with its single verdict."""

    suite: str
    profile: str
    group: str
    factor: str
    question: str
    dataset: str
    levels: list[Level]
    reference: Level | None = None
    reference_why: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    plateau: Plateau | None = None  # the epochs question's answer
    answer: str = ""
    source: str = ""  # who published per-level figures (the suite's `published` table)
    published: list[LevelPublished] = field(default_factory=list)

    def comparison(self, lv: Level) -> Comparison | None:
        return next((c for c in self.comparisons if c.level is lv), None)


def _seed(r: Record) -> int:
    return int(r.get("seed", 0))


def _value_label(r: Record, factor: str) -> tuple[str, tuple[Any, ...]]:
    v = r.get("factor_value")
    if v is None and factor in (r.get("config") or {}) and factor != "variant":
        v = r["config"][factor]  # a group that varies a config field without naming levels
    if v is None:  # the group varies the variant itself (e.g. d2l vs modern)
        lab = r["variant"] + (" " + overrides_label(r.get("overrides"), empty="")
                              if r.get("overrides") else "")
        return lab, (5, lab)
    return level(v), level_key(v)


def _add(lv: Level, r: Record, value: float | None, judged: bool) -> None:
    lv.records.append(r)
    if r["status"] == "ok" and value is not None:
        lv.by_seed[_seed(r)] = float(value)
        if judged and did_not_train(r):
            lv.untrained.add(_seed(r))


def levels_by_dataset(records: list[Record], factor: str) -> dict[str, list[Level]]:
    """Levels per dataset in the factor's natural order. For the epochs factor without named
    levels, every epoch of the longest runs' history is a level (test accuracy after it)."""
    out: dict[str, dict[str, Level]] = defaultdict(dict)
    epochs = factor == EPOCHS_FACTOR and all(r.get("factor_value") is None for r in records)
    for r in records:
        lvls = out[r["dataset"]]
        if epochs:
            hist = [h for h in r.get("history") or [] if h.get("test_acc") is not None]
            if r["status"] != "ok":  # counted once, at the epochs it was meant to train
                e = int((r.get("config") or {}).get("num_epochs") or len(hist))
                lvls.setdefault(str(e), Level(str(e), level_key(e))).records.append(r)
                continue
            for h in hist:
                e = int(h["epoch"])
                lv = lvls.setdefault(str(e), Level(str(e), level_key(e)))
                # per-epoch accuracy: no confusion matrix to judge collapse by, except the last
                _add(lv, r, h["test_acc"], judged=e == len(hist))
            continue
        lab, order = _value_label(r, factor)
        _add(lvls.setdefault(lab, Level(lab, order)), r, (r["metrics"] or {}).get("test_acc"),
             judged=True)
    return {ds: sorted(lv.values(), key=lambda x: (x.order, x.label))
            for ds, lv in sorted(out.items())}


def _is_default(r: Record) -> bool:
    from bench.d2l.common import is_default

    try:
        return is_default(r["variant"], r.get("overrides") or {})
    except Exception:  # noqa: BLE001 — an unregistered variant or a key this tree lacks
        return False


def reference(levels: list[Level], factor: str) -> tuple[Level | None, str]:
    """The level every other one is compared with, and why it is the reference."""
    if not levels:
        return None, ""
    if factor == EPOCHS_FACTOR and all(lv.label.isdigit() for lv in levels):
        last = max(levels, key=lambda lv: int(lv.label))
        return last, f"the longest training ({last.label} epochs)"
    named = next((lv for lv in levels if lv.label == "baseline"), None)
    if named:
        return named, "the baseline"
    default = next((lv for lv in levels if lv.records and all(_is_default(r)
                                                               for r in lv.records)), None)
    if default:
        return default, "the baseline (the variant's own recipe and defaults)"
    return levels[0], "the group's first level (no level is the unchanged baseline)"


def judge(q: Question) -> None:
    """Fill the reference, the comparisons (paired t with Holm, and the sequential rule's
    verdict, which is the answer) and the answer. The epochs group is answered as a plateau:
    no test of every epoch against the last."""
    q.reference, q.reference_why = reference(q.levels, q.factor)
    ref = q.reference
    if q.factor == EPOCHS_FACTOR and ref is not None and ref.label.isdigit():
        q.plateau = epochs_plateau(q.dataset, [lv for lv in q.levels if lv.trained])
        q.answer = answer(q)
        return
    if ref is not None and ref.trained:
        q.comparisons = [Comparison(lv, paired(lv.by_seed, ref.by_seed))
                         for lv in q.levels if lv is not ref and lv.trained]
        tested = [c for c in q.comparisons if c.test.tested]
        pvalues = [p for c in tested if (p := c.test.p) is not None]  # tested: each has a p
        for c, p in zip(tested, holm(pvalues), strict=True):
            c.p_holm = p
        decisions = level_decisions(q.suite, q.profile, q.dataset, q.group,
                                    [c.level for c in q.comparisons], ref)
        for c, d in zip(q.comparisons, decisions, strict=True):
            c.decision = d
    q.answer = answer(q)


def _name(q: Question, lv: Level) -> str:
    """A level named with its factor: 'kernel_size 3', 'num_epochs 5'."""
    return lv.label if q.factor in ("variant", "configuration") else f"{q.factor} {lv.label}"


def _lv(q: Question, lv: Level) -> str:
    return f"{_name(q, lv)} ({pct(lv.mean())})"


def _c(q: Question, c: Comparison) -> str:
    d = c.decision
    if d is None or d.verdict.delta is None:
        return f"{_name(q, c.level)} {pp(c.test.mean)}"
    v = d.verdict
    return f"{_name(q, c.level)} {pp(v.delta)} {pp_interval(v.lo, v.hi)}"


def _best_ref(q: Question, best: Level, ref: Level) -> str:
    if best is ref:
        return f"the reference {_lv(q, ref)} has the highest mean"
    return f"highest mean {_lv(q, best)}, reference {_lv(q, ref)}"


def answer(q: Question) -> str:
    """The question's one-line verdict."""
    name = q.group
    trained = [lv for lv in q.levels if lv.trained]
    dead = [lv.label for lv in q.levels if lv.by_seed and not lv.trained]
    partial = [f"{lv.label} ({len(lv.untrained)} of {len(lv.by_seed)} seeds)"
               for lv in trained if lv.untrained]
    notes = []
    if dead:
        notes.append("did not train (one class predicted): " + ", ".join(dead))
    if partial:
        notes.append("some seeds did not train: " + ", ".join(partial))
    bad = [f"{lv.label} ({lv.count('diverged')} diverged, {lv.count('failed')} failed)"
           for lv in q.levels if lv.count("diverged") or lv.count("failed")]
    if bad:
        notes.append("runs that did not finish: " + ", ".join(bad))
    tail = "".join(f"; {n}" for n in notes) + "."
    if not trained:
        return f"{name}: no level has finished runs that trained, no answer{tail}"
    ref = q.reference
    best = max(trained, key=lambda lv: (lv.mean() or 0.0, -q.levels.index(lv)))
    if ref is None or not ref.trained:
        what = "has no finished runs" if ref is None or not ref.by_seed else "did not train"
        return (f"{name}: the reference {ref.label if ref else '–'} {what}, nothing to compare "
                f"with; highest mean {_lv(q, best)}{tail}")
    head = f"{name}: {_best_ref(q, best, ref)}"
    if q.plateau is not None:
        return f"{name}: {plateau_text(q.plateau)}{tail}"
    if q.factor == EPOCHS_FACTOR and ref.label.isdigit():
        return (f"{name}: no plateau answer: it needs the per-epoch accuracy of the same "
                f"{MIN_SEEDS} or more seeds; {_best_ref(q, best, ref)}{tail}")
    if not q.comparisons:
        return f"{head}; no other level trained, nothing to compare with{tail}"
    by: dict[str, list[str]] = {}
    for c in q.comparisons:
        by.setdefault(c.verdict(), []).append(_c(q, c))
    parts = []
    for words in sorted(by, key=_order):
        label = f"{words} than the reference" if words in ("better", "worse") else words
        parts.append(f"{label}: " + ", ".join(by[words]))
    return f"{head}; " + "; ".join(parts) + " (sequential rule)" + tail


def _order(words: str) -> tuple[int, str]:
    first = words.split()[0]
    return ({"better": 0, "worse": 1, "equivalent": 2}.get(first, 3), words)


def plateau_text(p: Plateau) -> str:
    """The epochs answer: the fewest epochs equivalent to the best of the longer runs."""
    m = f"±{100 * p.margin:.2f} pp"
    how = (f"(paired over {p.n_seeds} seeds, TOST at α = {p.alpha:.3g} per look, "
           "from the last epoch down)")
    if not p.tested:
        nxt = f"; the first look is at {p.next_n}" if p.next_n else ""
        looks = ", ".join(map(str, LOOKS))
        return (f"undecided after {p.n_seeds} seeds: no epoch tested yet{nxt} (looks at "
                f"{looks} seeds of the longest runs, α/{len(LOOKS)} each)")
    if p.rising:
        e, ref, d, lo, hi, _ = p.tested[-1]
        return (f"no plateau yet: accuracy still rises at the last epoch ({p.epoch}); epoch "
                f"{e} is worse than epoch {ref} by {pp(d)} {pp_interval(lo, hi)} {how}")
    if not p.found:
        e, ref, d, lo, hi, _ = p.tested[-1]
        return (f"undecided after {p.n_seeds} seeds: no epoch before the last ({p.epoch}) is "
                f"shown equivalent within {m} to the best later epoch: epoch {e} against "
                f"epoch {ref}, Δ {pp(d)} {pp_interval(lo, hi)} {how}")
    return (f"plateau at epoch {p.epoch}: equivalent within {m} to the best of the longer "
            f"runs (epoch {p.ref_epoch}), Δ {pp(p.delta)} {pp_interval(p.lo, p.hi)} (paired "
            f"over {p.n_seeds} seeds, TOST at α = {p.alpha:.3g} per look, every later epoch "
            "tested in sequence from the last down)")


def questions(suite: str, profile: str, groups: dict[str, list[Record]]) -> list[Question]:
    """`groups`: group name → its records (one per membership), all of one run set."""
    out = []
    for gname, recs in sorted(groups.items()):
        first = min(recs, key=lambda r: r["run_id"])
        factor = first.get("factor") or "configuration"
        for ds, levels in levels_by_dataset(recs, factor).items():
            q = Question(suite, profile, gname, factor, first.get("question") or "", ds, levels)
            judge(q)
            out.append(q)
    return out


def judge_published(q: Question, table: dict[str, Any]) -> None:
    """The suite's per-level published figures, each against the prediction interval for one
    new run of that level, unless the budget was cut short or there are too few seeds."""
    from report.budget import budget_of
    from report.published import verdict_on

    err = table.get("metric") == "test_error"
    q.source = str(table.get("source") or "the source")
    by_label = {lv.label: lv for lv in q.levels}
    for item in table.get("levels") or []:
        lv = by_label.get(level(item.get("level")))
        if lv is None:
            continue
        value = float(item["value"])
        vals = tuple(1 - v if err else v for v in lv.values)
        first = next((r for r in lv.records if r["status"] == "ok"), None)
        short = budget_of(first).shortfall() if first else None
        status, verdict, pi = verdict_on(value, list(vals), short)
        q.published.append(LevelPublished(lv.label, value, vals, pi, status, verdict))


def _get(d: Any, *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _n_note(ns: list[int]) -> str:
    n = min(ns, default=0)
    seeds = f"{n} seed{'s' if n != 1 else ''} per network"
    return f"{seeds}: descriptive, {TOO_FEW}" if n < MIN_SEEDS else f"means over {seeds}"


def activations_answer(a: dict[str, Any]) -> str | None:
    """ex4 in one line: linear-probe accuracy from conv1 and conv2 activations per network."""
    parts, ns = [], []
    for v, d in sorted((_get(a, "variants") or {}).items()):
        c1, c2 = (_get(d, "over_seeds", c, "probe_acc") or {} for c in ("conv1", "conv2"))
        if c1.get("mean") is None or c2.get("mean") is None:
            continue
        parts.append(f"{v} {pct(c1['mean'])} → {pct(c2['mean'])}")
        ns.append(int(c1.get("n") or 0))
    if not parts:
        return None
    classes = " vs ".join(str(c).lower() for c in a.get("classes") or []) or "the two classes"
    pixels = _get(a, "probe", "pixels", "mean")
    raw = f"; raw pixels {pct(pixels)}" if pixels is not None else ""
    return (f"linear-probe accuracy at telling {classes} apart from conv1 → conv2 activations: "
            + ", ".join(parts) + raw + f" ({_n_note(ns)})")


OOD_SETS = (("gaussian_noise", "noise"), ("photos", "photos"), ("other_dataset", "other dataset"))


def ood_answer(o: dict[str, Any]) -> str | None:
    """ex5 in one line: mean top-class confidence in distribution and far from it."""
    parts, ns = [], []
    for v, d in sorted((_get(o, "variants") or {}).items()):
        seen = _get(d, "over_seeds", "in_distribution", "msp_mean") or {}
        far = [(name, _get(d, "over_seeds", key, "msp_mean", "mean")) for key, name in OOD_SETS]
        far = [(name, x) for name, x in far if x is not None]
        if seen.get("mean") is None or not far:
            continue
        parts.append(f"{v} {seen['mean']:.2f} → " + " / ".join(f"{x:.2f}" for _, x in far))
        ns.append(int(seen.get("n") or 0))
        names = " / ".join(name for name, _ in far)
    if not parts:
        return None
    return (f"mean top-class confidence (max softmax probability) on its test set → {names}: "
            + ", ".join(parts) + f" ({_n_note(ns)})")


ANALYSIS_ANSWERS = {"activations": activations_answer, "ood": ood_answer}


def analysis_answer(kind: str, summary: dict[str, Any]) -> str:
    """The one line a non-accuracy question (ex4, ex5) is answered by, from its summary.json."""
    fn = ANALYSIS_ANSWERS.get(kind)
    line = fn(summary.get(kind) or {}) if fn else None
    return line or "answered by the analysis below (no structured result to quote)"
