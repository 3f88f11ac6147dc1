"""Sequential comparison of two configurations over seeds: when adding seeds may stop.

Adding seeds until a difference "looks significant" and stopping there inflates the error
rates: every look is one more chance to be fooled by noise. Here the looks sit at numbers of
seeds fixed in advance and each look spends alpha/K of the error budget, so a comparison may
be inspected after every round of seeds and still keep its stated error rates. Replaying the
looks on the seeds that exist gives the same verdict as watching live, because a verdict
depends only on the first n_k seeds at each planned look.

Also here: P(A > B) with a stratified bootstrap interval (a scale-free summary that does not
assume normal seeds), the epoch where a training curve stops improving (fixed-sequence TOST),
and a vectorised simulator that measures the design's error rates and power.

Pure statistics (numpy and scipy, no torch): reports and planning tools use it without the
training stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from numbers import Real

import numpy as np
from scipy import stats

METHOD = (
    "group-sequential paired t design with K pre-planned looks and Bonferroni alpha spending "
    "(alpha/K per look; valid by the union bound, a conservative alpha-spending function: "
    "Jennison & Turnbull 2000, Group Sequential Methods, ch. 7), with equivalence by the two "
    "one-sided tests inside the same interval (Schuirmann 1987)"
)

OUTCOMES = ("better", "worse", "equivalent", "undecided", "open")
DECIDED = frozenset(OUTCOMES[:3])
MIN_SEEDS = 3  # below this a paired sd has < 2 degrees of freedom: the interval is noise

_BETTER, _WORSE, _EQUIVALENT, _UNDECIDED, _OPEN = range(5)
_PENDING = -1

ArrayLike = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Design:
    """A pre-planned sequential comparison, fixed before any seed is seen.

    margin: the equivalence margin m in accuracy units (0.003 = 0.3 pp): differences inside
    (-m, m) do not matter. looks: seeds per arm at each look, strictly increasing; the last is
    the cap (no more seeds are ever run for this comparison).
    """

    margin: float
    alpha: float = 0.05
    looks: tuple[int, ...] = (5, 10, 15)

    def __post_init__(self) -> None:
        if not (isinstance(self.margin, Real) and math.isfinite(self.margin)
                and self.margin > 0):
            raise ValueError(f"margin must be a positive finite accuracy, got {self.margin!r}")
        if not (isinstance(self.alpha, Real) and 0 < self.alpha < 1):
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha!r}")
        looks = tuple(self.looks)
        if not looks:
            raise ValueError("looks must name at least one number of seeds")
        if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in looks):
            raise ValueError(f"looks must be integers, got {looks!r}")
        looks = tuple(int(n) for n in looks)
        if looks[0] < MIN_SEEDS:
            raise ValueError(f"the first look needs >= {MIN_SEEDS} seeds, got {looks[0]}")
        if any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
            raise ValueError(f"looks must be strictly increasing, got {looks!r}")
        object.__setattr__(self, "looks", looks)  # a list or numpy ints become a plain tuple

    @property
    def cap(self) -> int:
        """Seeds per arm at the last look: the most this comparison will ever run."""
        return self.looks[-1]

    def level(self, k: int) -> float:
        """Two-sided confidence level of the interval at look k (0-based): 1 - alpha/K.

        The same at every look (Bonferroni spending); k is checked so that a caller indexing
        past the plan fails loudly.
        """
        self._check_look(k)
        return 1.0 - self.alpha / len(self.looks)

    def _check_look(self, k: int) -> None:
        if not 0 <= k < len(self.looks):
            raise ValueError(f"look index {k} outside 0..{len(self.looks) - 1}")

    def _t(self, k: int) -> float:
        """t_{n_k - 1, 1 - alpha/(2K)}: the interval's half-width in standard errors."""
        return float(stats.t.ppf(1.0 - (1.0 - self.level(k)) / 2.0, self.looks[k] - 1))


@dataclass(frozen=True)
class Verdict:
    """The state of one comparison: decided at a look, undecided at the cap, or still open.

    n: seeds per arm at the deciding look (the cap for "undecided"; the seeds available for
    "open"). delta, lo, hi: mean of the paired differences A - B and its interval at that look
    (for "open", the last look that ran; None where none ran). look: 1-based index of that
    look. next_n: for "open", seeds per arm the next look needs.
    """

    outcome: str
    n: int
    delta: float | None
    lo: float | None
    hi: float | None
    look: int | None
    next_n: int | None
    margin: float
    alpha: float

    @property
    def decided(self) -> bool:
        return self.outcome in DECIDED

    def words(self, unit_pp: bool = True) -> str:
        """The short phrasing used in reports ("open" reads like "undecided": the outcome field
        keeps the difference between a finished and an interrupted comparison)."""
        if self.outcome in ("better", "worse"):
            return self.outcome
        if self.outcome == "equivalent":
            m = f"±{100 * self.margin:.2f} pp" if unit_pp else f"±{self.margin:g}"
            return f"equivalent within {m}"
        return f"undecided after {self.n} seed{'' if self.n == 1 else 's'}"


def _arm(x: ArrayLike, name: str) -> np.ndarray:
    """One arm's per-seed values as a finite 1-D float array (NaN would silently poison the
    mean and sd, and a comparison on it would claim a verdict it cannot support)."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one value per seed (1-D), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds a non-finite value (NaN or inf)")
    return arr


def _interval(d: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the paired differences along the last axis, and mean ± t · sd/√n.

    One function for the single comparison and the vectorised simulator, so both compute the
    very same numbers.
    """
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    half = t * d.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def _classify(lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    """Outcome codes at one look: a difference excluded from zero decides first, then an
    interval inside (-m, m) decides equivalence (both TOST one-sided tests reject)."""
    equivalent = (lo > -margin) & (hi < margin)
    return np.where(lo > 0, _BETTER,
                    np.where(hi < 0, _WORSE, np.where(equivalent, _EQUIVALENT, _UNDECIDED)))


def look(a: ArrayLike, b: ArrayLike, design: Design, k: int) -> Verdict:
    """The analysis at look k (0-based) on the first n_k seeds of each arm.

    Outcome "undecided" here only means this look did not decide; `decide` turns it into a
    final verdict or moves on to the next look.
    """
    design._check_look(k)
    aa, bb = _arm(a, "a"), _arm(b, "b")
    n = design.looks[k]
    if min(len(aa), len(bb)) < n:
        raise ValueError(f"look {k + 1} needs {n} seeds per arm, got {len(aa)} and {len(bb)}")
    d = (aa[:n] - bb[:n])[None, :]
    mean, lo, hi = _interval(d, design._t(k))
    code = int(_classify(lo, hi, design.margin)[0])
    return Verdict(OUTCOMES[code], n, float(mean[0]), float(lo[0]), float(hi[0]), k + 1, None,
                   design.margin, design.alpha)


def decide(a: ArrayLike, b: ArrayLike, design: Design) -> Verdict:
    """Replay the planned looks on the seeds given; the first decided look wins.

    Seed i of a is paired with seed i of b; the arms may differ in length (the shorter one
    bounds the looks). Seeds beyond the deciding look are ignored, so the verdict is the one a
    live comparison would have stopped at.
    """
    aa, bb = _arm(a, "a"), _arm(b, "b")
    n_avail = min(len(aa), len(bb))
    last: Verdict | None = None
    for k, n_k in enumerate(design.looks):
        if n_k > n_avail:
            return Verdict("open", n_avail, last.delta if last else None,
                           last.lo if last else None, last.hi if last else None,
                           last.look if last else None, n_k, design.margin, design.alpha)
        last = look(aa, bb, design, k)
        if last.decided:
            return last
    assert last is not None  # a Design always has at least one look
    return last  # the cap, undecided


def seeds_needed(a: ArrayLike, b: ArrayLike, design: Design) -> int | None:
    """Seeds per arm the next look needs in total (the Verdict's next_n), or None once the
    comparison is decided or has reached its cap: run seeds up to this number, then decide."""
    v = decide(a, b, design)
    return v.next_n if v.outcome == "open" else None


def decide_many(a: np.ndarray, b: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
    """`decide` for many comparisons at once (rows = comparisons, columns = seeds).

    Returns the outcome names and the seeds per arm used (as `Verdict.n`). The same look logic
    as `decide`, vectorised over rows so that simulations of 10^4 comparisons take
    milliseconds.
    """
    aa, bb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if aa.ndim != 2 or bb.ndim != 2 or aa.shape[0] != bb.shape[0]:
        raise ValueError(f"a and b must be comparisons x seeds with equal rows, got "
                         f"{aa.shape} and {bb.shape}")
    if not (np.all(np.isfinite(aa)) and np.all(np.isfinite(bb))):
        raise ValueError("a or b holds a non-finite value (NaN or inf)")
    n_avail = min(aa.shape[1], bb.shape[1])
    rows = aa.shape[0]
    codes = np.full(rows, _PENDING)
    n_used = np.zeros(rows, dtype=int)
    for k, n_k in enumerate(design.looks):
        pending = codes == _PENDING
        if n_k > n_avail:
            codes[pending] = _OPEN
            n_used[pending] = n_avail
            break
        d = aa[:, :n_k] - bb[:, :n_k]
        _, lo, hi = _interval(d, design._t(k))
        c = _classify(lo, hi, design.margin)
        final = pending & ((c != _UNDECIDED) | (k == len(design.looks) - 1))
        codes[final] = c[final]
        n_used[final] = n_k
    return np.asarray(OUTCOMES)[codes], n_used


def draw_pairs(design: Design, delta: float, sd_a: float, sd_b: float, n_sims: int,
               rng: np.random.Generator, rho: float = 0.0,
               mu: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Simulated per-seed accuracies up to the cap: A ~ N(mu + delta, sd_a²), B ~ N(mu, sd_b²),
    paired seeds correlated by rho (shared initialisation or data order)."""
    if n_sims < 1:
        raise ValueError(f"n_sims must be >= 1, got {n_sims}")
    if sd_a < 0 or sd_b < 0:
        raise ValueError(f"standard deviations must be >= 0, got {sd_a} and {sd_b}")
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho must lie in [-1, 1], got {rho}")
    z = rng.standard_normal((2, n_sims, design.cap))
    a = mu + delta + sd_a * z[0]
    b = mu + sd_b * (rho * z[0] + math.sqrt(1.0 - rho * rho) * z[1])
    return a, b


def simulate(design: Design, delta: float, sd_a: float, sd_b: float, n_sims: int,
             rng: np.random.Generator, rho: float = 0.0) -> dict[str, float]:
    """Monte-Carlo rates of each outcome of `decide` (keys: OUTCOMES) and the mean seeds per
    arm used ("mean_n"): the design's error rates and power at a true difference delta."""
    a, b = draw_pairs(design, delta, sd_a, sd_b, n_sims, rng, rho)
    outcomes, n_used = decide_many(a, b, design)
    rates = {o: float(np.mean(outcomes == o)) for o in OUTCOMES}
    rates["mean_n"] = float(n_used.mean())
    return rates


def prob_improvement(a: ArrayLike, b: ArrayLike, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """P(A > B): the chance that a new seed of A beats a new seed of B, with a percentile
    bootstrap interval (point, lo, hi).

    The Mann-Whitney statistic over all (unpaired) pairs, ties counting one half; the bootstrap
    resamples seeds within each arm independently (stratified, as rliable does: Agarwal et al.
    2021, "Deep RL at the edge of the statistical precipice"; recommended by Bouthillier et al.
    2021). A replicate's statistic is c_a' W c_b / (n_a n_b) with W the pairwise score matrix
    and c the resampling counts, so the bootstrap costs one matrix product and no n_a x n_b
    copy per replicate.
    """
    aa, bb = _arm(a, "a"), _arm(b, "b")
    if len(aa) < MIN_SEEDS or len(bb) < MIN_SEEDS:
        raise ValueError(f"P(A > B) needs >= {MIN_SEEDS} seeds per arm, got {len(aa)} and "
                         f"{len(bb)}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    w = (aa[:, None] > bb[None, :]) + 0.5 * (aa[:, None] == bb[None, :])
    na, nb = len(aa), len(bb)
    point = float(w.mean())
    rng = np.random.default_rng(seed)
    ca = rng.multinomial(na, np.full(na, 1.0 / na), size=n_boot)
    cb = rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_boot)
    boot = np.einsum("ri,ij,rj->r", ca, w, cb) / (na * nb)
    lo, hi = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return point, float(lo), float(hi)


@dataclass(frozen=True)
class Plateau:
    """Where a training curve stops improving: the fewest epochs whose accuracy is equivalent
    (within ±margin) to the best longer run, and every test made on the way down.

    epoch, ref_epoch: 1-based; delta, lo, hi: the plateau epoch minus its reference (None
    where epoch is the last, tested nothing). tested: (epoch, ref_epoch, delta, lo, hi,
    equivalent) in testing order.
    """

    epoch: int
    ref_epoch: int
    delta: float | None
    lo: float | None
    hi: float | None
    n_seeds: int
    margin: float
    alpha: float
    tested: list[tuple[int, int, float, float, float, bool]] = field(default_factory=list)
    next_n: int | None = None  # plateau_looks: seeds the next look needs while undecided

    @property
    def found(self) -> bool:
        """An epoch before the last is shown equivalent to the best later one."""
        return self.delta is not None

    @property
    def rising(self) -> bool:
        """The epoch before the last is decidedly below the last: no plateau yet."""
        return not self.found and bool(self.tested) and self.tested[-1][4] < 0

    @property
    def decided(self) -> bool:
        """More seeds would not change the answer's kind (a plateau, or still rising)."""
        return self.found or self.rising


def plateau(curves: np.ndarray | Sequence[Sequence[float]], margin: float,
            alpha: float = 0.05) -> Plateau:
    """The plateau epoch of seeds x epochs accuracy curves (same runs at every epoch).

    Each epoch e < E is compared, paired over seeds, with the later epoch of highest mean
    accuracy; equivalent when the (1 - 2 alpha) interval lies inside (-m, m) (TOST at alpha).
    Epochs are tested in the fixed order E-1, E-2, ... and testing stops at the first failure:
    a fixed sequence controls the familywise error at alpha with no adjustment (Maurer, Hothorn
    & Lehmacher 1995), so "stop at epoch e" is claimed at level alpha.
    """
    acc = np.asarray(curves, dtype=float)
    if acc.ndim != 2:
        raise ValueError(f"curves must be seeds x epochs (2-D), got shape {acc.shape}")
    n_seeds, n_epochs = acc.shape
    if n_seeds < MIN_SEEDS:
        raise ValueError(f"plateau needs >= {MIN_SEEDS} seeds, got {n_seeds}")
    if n_epochs < 1:
        raise ValueError("curves hold no epoch")
    if not np.all(np.isfinite(acc)):
        raise ValueError("curves hold a non-finite value (NaN or inf)")
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive finite accuracy, got {margin!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")
    t = float(stats.t.ppf(1.0 - alpha, n_seeds - 1))
    means = acc.mean(axis=0)
    tested: list[tuple[int, int, float, float, float, bool]] = []
    best = Plateau(n_epochs, n_epochs, None, None, None, n_seeds, margin, alpha, tested)
    for e in range(n_epochs - 2, -1, -1):  # 0-based: E-1, E-2, ... in 1-based epochs
        ref = e + 1 + int(np.argmax(means[e + 1:]))
        mean, lo, hi = (float(x[0]) for x in _interval((acc[:, e] - acc[:, ref])[None, :], t))
        ok = lo > -margin and hi < margin
        tested.append((e + 1, ref + 1, mean, lo, hi, ok))
        if not ok:
            break
        best = Plateau(e + 1, ref + 1, mean, lo, hi, n_seeds, margin, alpha, tested)
    return best


def plateau_looks(curves: np.ndarray | Sequence[Sequence[float]], margin: float,
                  alpha: float = 0.05, looks: tuple[int, ...] = (5, 10, 15)) -> Plateau:
    """`plateau` at pre-planned looks, for a curve whose seeds are added after looking.

    Look k tests the first looks[k] seeds at alpha/K (Bonferroni over the K looks, as
    `Design`); the first look that decides (a plateau, or the curve still rising) gives the
    answer, else the last look that ran, with next_n set while a look remains. Each look's
    fixed sequence errs with probability <= alpha/K, so the answer, whichever look gives it,
    errs with probability <= alpha (the union bound): seeds may be added until it decides.
    Fewer seeds than the first look: no test, next_n = looks[0].
    """
    acc = np.asarray(curves, dtype=float)
    if acc.ndim != 2:
        raise ValueError(f"curves must be seeds x epochs (2-D), got shape {acc.shape}")
    design = Design(margin=margin, alpha=alpha, looks=looks)  # validates margin, alpha, looks
    a_k = alpha / len(design.looks)
    n = acc.shape[0]
    last: Plateau | None = None
    for n_k in design.looks:
        if n_k > n:
            nxt = n_k
            break
        last = plateau(acc[:n_k], margin, a_k)
        if last.decided:
            return last
    else:
        nxt = None  # the cap ran: undecided there
    if last is None:
        e = acc.shape[1]
        return Plateau(e, e, None, None, None, n, margin, a_k, [], next_n=nxt)
    return replace(last, next_n=nxt)  # n_seeds: the seeds that look tested
