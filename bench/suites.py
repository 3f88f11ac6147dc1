"""Suites say *what* runs (TOML under bench/suites/), profiles say *how much*.

A suite is a list of groups; a group is variants × datasets × an override grid, plus the
question it answers and the factor it varies (kept in every record for the report).
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import DATASET_NAMES, RunConfig, resolve_config
from bench.errors import UsageError
from variants import create_variant, list_variants
from variants.registry import VariantError

SUITES_DIR = Path(__file__).parent / "suites"
MAX_RUNS_WITHOUT_YES = 500


@dataclass(frozen=True)
class Profile:
    name: str
    seeds: int
    num_epochs: int | None  # None: the recipe's
    train_subset: int | None
    test_subset: int | None
    other_dataset: bool  # "recipe" datasets widen to both datasets
    description: str

    def training_defaults(self) -> dict[str, Any]:
        d: dict[str, Any] = {"train_subset": self.train_subset, "test_subset": self.test_subset}
        if self.num_epochs is not None:
            d["num_epochs"] = self.num_epochs
        return d


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", 1, 1, 10_000, 2_000, False,
        "1 seed, 1 epoch, fixed subset of 10,000 train / 2,000 test images (CI gate)",
    ),
    "quick": Profile(
        "quick", 2, 2, None, None, False,
        "2 seeds, 2 epochs, full data, the recipe's dataset (CPU default)",
    ),
    "full": Profile(
        "full", 5, None, None, None, True,
        "5 seeds, the recipe's epochs, full data, both datasets (GPU default)",
    ),
}

GROUP_KEYS = {
    "name", "question", "factor", "variants", "datasets", "set", "grid", "profiles",
    "best_of", "analysis", "reuse",  # the d2l exercise suites (see bench/d2l/)
}
# `--suite NAME` runs these suites in order (a later one may read an earlier one's records).
SUITE_SETS: dict[str, tuple[str, ...]] = {
    "d2l": ("d2l-ex1", "d2l-ex2", "d2l-ex3", "d2l-ex4", "d2l-ex5"),
}
SUITE_KEYS = {"description", "groups", "profiles"}
PROFILE_KEYS = {"seeds", "num_epochs", "train_subset", "test_subset"}


@dataclass(frozen=True)
class Group:
    name: str
    question: str
    factor: str | None
    variants: str
    datasets: str | list[str]
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {suite, rule, text}: the configurations come from another suite's records (bench.d2l).
    best_of: dict[str, Any] | None = None
    analysis: str | None = None  # an analysis of bench.d2l.ANALYSES run after training
    reuse: str | None = None  # copy identical finished runs (same run id) from this suite


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    groups: list[Group]
    profiles: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PlannedRun:
    """One run of a suite: its resolved config plus what question/factor it answers."""

    suite: str
    profile: str
    group: str
    question: str
    factor: str | None
    factor_value: Any
    overrides: dict[str, Any]
    config: RunConfig
    # Every (group, question, factor, factor_value) this run answers: a shared baseline (e.g.
    # kernel 5 = channels [6,16] = lr 0.1) is trained once and counted in each of its groups.
    memberships: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.config.run_id()


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_names(name: str) -> list[str]:
    """The suites `--suite NAME` runs, in order: a suite set (d2l) stands for its members."""
    if name in SUITE_SETS:
        return list(SUITE_SETS[name])
    avail = available_suites()
    if name in avail:
        return [name]
    members = {m for ms in SUITE_SETS.values() for m in ms}
    valid = [s for s in avail if s not in members] + list(SUITE_SETS)
    valid += [s for s in avail if s in members]
    raise UsageError(f"unknown suite {name!r}; valid: {', '.join(valid)}")


def _parse_d2l_keys(where: str, g: dict[str, Any]) -> dict[str, Any]:
    """The optional keys `best_of`, `analysis` and `reuse` (used by the d2l suites)."""
    from bench.d2l import ANALYSES, RULES

    out: dict[str, Any] = {}
    if "analysis" in g:
        a = _expect(f"{where}.analysis", g["analysis"], str, "a string")
        if a not in ANALYSES:
            raise UsageError(f"{where}.analysis must be one of {', '.join(ANALYSES)}; got {a!r}")
        out["analysis"] = a
    if "reuse" in g:
        out["reuse"] = _expect(f"{where}.reuse", g["reuse"], str, "a suite name")
    if "best_of" in g:
        b = _expect(f"{where}.best_of", g["best_of"], dict, "a table {suite, rule, text}")
        _check_keys(f"{where}.best_of", b, {"suite", "rule", "text"})
        _expect(f"{where}.best_of.suite", b.get("suite"), str, "a suite name")
        rule = _expect(f"{where}.best_of.rule", b.get("rule"), str, "a rule name")
        if rule not in RULES:
            raise UsageError(f"{where}.best_of.rule must be one of {', '.join(RULES)}; "
                             f"got {rule!r}")
        _expect(f"{where}.best_of.text", b.get("text", ""), str, "a string")
        if g.get("grid"):
            raise UsageError(f"{where}: best_of and grid cannot be combined")
        out["best_of"] = dict(b)
    return out


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise UsageError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    return PROFILES[name]


def _check_keys(where: str, got: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}"
        )


def _expect(where: str, value: Any, tp: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        raise UsageError(f"{where} must be {what}, got {value!r}")
    return value


def _parse_profiles(where: str, raw: Any) -> dict[str, dict[str, Any]]:
    _expect(where, raw, dict, "a table of profiles")
    out: dict[str, dict[str, Any]] = {}
    for pname, tweaks in raw.items():
        get_profile(pname)
        _expect(f"{where}.{pname}", tweaks, dict, "a table")
        _check_keys(f"{where}.{pname}", tweaks, PROFILE_KEYS)
        for k, v in tweaks.items():
            if v is not None:
                _expect(f"{where}.{pname}.{k}", v, int, "an integer")
                if v < 1:
                    raise UsageError(f"{where}.{pname}.{k} must be ≥ 1, got {v}")
        out[pname] = dict(tweaks)
    return out


def parse_suite(name: str, text: str) -> Suite:
    """Validate a suite file's contents; every problem is a one-line UsageError."""
    where = f"suite {name!r}"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: invalid TOML: {e}") from None
    _check_keys(where, raw, SUITE_KEYS)
    desc = _expect(f"{where}.description", raw.get("description", ""), str, "a string")
    profiles = _parse_profiles(f"{where}.profiles", raw.get("profiles", {}))
    groups_raw = _expect(f"{where}.groups", raw.get("groups", []), list, "a list of tables")
    if not groups_raw:
        raise UsageError(f"{where}: has no [[groups]]")
    groups = []
    for i, g in enumerate(groups_raw):
        gw = f"{where} group {i + 1}"
        _expect(gw, g, dict, "a table")
        _check_keys(gw, g, GROUP_KEYS)
        gname = _expect(f"{gw}.name", g.get("name", f"group{i + 1}"), str, "a string")
        datasets = g.get("datasets", "recipe")
        if isinstance(datasets, str):
            if datasets not in ("recipe", "all") and datasets not in DATASET_NAMES:
                raise UsageError(
                    f"{gw}.datasets must be 'recipe', 'all' or a list of "
                    f"{', '.join(DATASET_NAMES)}; got {datasets!r}"
                )
        else:
            _expect(f"{gw}.datasets", datasets, list, "a string or a list")
            bad = [d for d in datasets if d not in DATASET_NAMES]
            if bad or not datasets:
                raise UsageError(
                    f"{gw}.datasets: unknown {bad or 'empty list'}; valid: "
                    f"{', '.join(DATASET_NAMES)}"
                )
        grid = _expect(f"{gw}.grid", g.get("grid", {}), dict, "a table of lists")
        for k, v in grid.items():
            _expect(f"{gw}.grid.{k}", v, list, "a list")
            if not v:
                raise UsageError(f"{gw}.grid.{k} is an empty list: the group would have no runs")
        factor = g.get("factor")
        if factor is not None:
            _expect(f"{gw}.factor", factor, str, "a string")
        groups.append(
            Group(
                name=gname,
                question=_expect(f"{gw}.question", g.get("question", ""), str, "a string"),
                factor=factor,
                variants=_expect(f"{gw}.variants", g.get("variants", "*"), str, "a pattern"),
                datasets=datasets,
                fixed=dict(_expect(f"{gw}.set", g.get("set", {}), dict, "a table")),
                grid=dict(grid),
                profiles=_parse_profiles(f"{gw}.profiles", g.get("profiles", {})),
                **_parse_d2l_keys(gw, g),
            )
        )
    return Suite(name=name, description=desc, groups=groups, profiles=profiles)


def load_suite(name: str, suites_dir: Path = SUITES_DIR) -> Suite:
    path = suites_dir / f"{name}.toml"
    if not path.is_file():
        valid = ", ".join(sorted(p.stem for p in suites_dir.glob("*.toml")))
        raise UsageError(f"unknown suite {name!r}; valid: {valid}")
    return parse_suite(name, path.read_text())


def _datasets_for(group: Group, variant_dataset: str, profile: Profile) -> list[str]:
    ds = group.datasets
    if ds == "all" or (ds == "recipe" and profile.other_dataset):
        return [variant_dataset] + [d for d in DATASET_NAMES if d != variant_dataset]
    if ds == "recipe":
        return [variant_dataset]
    if isinstance(ds, str):
        return [ds]
    return list(ds)


def expand(
    suite: Suite,
    profile: Profile,
    *,
    variants: str | None = None,
    datasets: list[str] | None = None,
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    results: Path | None = None,
) -> list[PlannedRun]:
    """Every run of the suite under the profile, validated (configs resolve, models build).

    `results` is read only by `best_of` groups, whose configurations come from the records
    of another suite (bench.d2l.best_of_choices).
    """
    from variants import get_spec

    bad = [d for d in datasets or [] if d not in DATASET_NAMES]
    if bad:
        raise UsageError(f"unknown dataset {bad[0]!r}; valid: {', '.join(DATASET_NAMES)}")
    plan: list[PlannedRun] = []
    seen: dict[str, PlannedRun] = {}
    for group in suite.groups:
        tweaks = {**suite.profiles.get(profile.name, {}), **group.profiles.get(profile.name, {})}
        n_seeds = seeds if seeds is not None else tweaks.get("seeds", profile.seeds)
        pdefaults = profile.training_defaults()
        pdefaults.update({k: v for k, v in tweaks.items() if k != "seeds"})
        if variants and group.variants == "*":
            names = list_variants(variants)  # asking by name admits non-default variants
        else:
            names = list_variants(group.variants, default_only=group.variants == "*")
            if variants:
                names = [n for n in names if n in set(list_variants(variants))]
        keys = list(group.grid)
        combos = list(itertools.product(*(group.grid[k] for k in keys))) or [()]
        choices: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
            (dict(zip(keys, combo, strict=True)), None) for combo in combos]
        if group.best_of:
            from bench.d2l import best_of_choices

            choices = list(best_of_choices(
                group, suite.name, profile, results=results, seeds=seeds,
                overrides=overrides, device=device, n_seeds=n_seeds))
        for vname in names:
            spec = get_spec(vname)
            for ds in _datasets_for(group, spec.recipe.dataset, profile):
                if datasets and ds not in datasets:
                    continue
                for combo_ov, info in choices:
                    ov = {**group.fixed, **combo_ov, **(overrides or {})}
                    fval = info["level"] if info else factor_value(group.factor, ov)
                    member = {"group": group.name, "question": group.question,
                              "factor": group.factor, "factor_value": fval}
                    if info:
                        member.update({k: v for k, v in info.items() if k != "level"})
                    for seed in range(n_seeds):
                        cfg = resolve_config(
                            vname, ds, seed, ov, profile_defaults=pdefaults, device=device
                        )
                        rid = cfg.run_id()
                        if rid in seen:  # the same run asked for twice (a shared baseline)
                            if member not in seen[rid].memberships:
                                seen[rid].memberships.append(member)
                            continue
                        seen[rid] = PlannedRun(
                            suite=suite.name, profile=profile.name, group=group.name,
                            question=group.question, factor=group.factor,
                            factor_value=fval, overrides=ov, config=cfg, memberships=[member],
                        )
                        plan.append(seen[rid])
    if not plan:
        raise UsageError(
            f"suite {suite.name!r} has no runs for variants={variants!r} datasets={datasets!r}; "
            f"variants: {', '.join(list_variants())}"
        )
    _check_builds(plan)
    return plan


def factor_value(factor: str | None, overrides: dict[str, Any]) -> Any:
    """The level of the varied factor; several factors ("activation,pool") join with '/'."""
    if not factor:
        return None
    keys = [k.strip() for k in factor.split(",")]
    vals = [overrides.get(k) for k in keys]
    if len(keys) == 1:
        return vals[0]
    return "/".join(str(v) for v in vals)


def _check_builds(plan: list[PlannedRun]) -> None:
    """Build each distinct model once so a bad option fails before anything is written."""
    tried: set[str] = set()
    for run in plan:
        key = f"{run.config.variant}:{sorted(run.config.model.items())}"
        if key in tried:
            continue
        tried.add(key)
        try:
            create_variant(run.config.variant, **run.config.model)
        except VariantError as e:
            raise UsageError(str(e)) from None
