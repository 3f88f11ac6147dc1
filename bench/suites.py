"""Suites say *what* runs (TOML under bench/suites/), profiles say *how much*.

A suite is a list of groups; a group is variants × datasets × an override grid, plus the
question it answers and the factor it varies (kept in every record for the report).

Extensions: a suite file may name an `extension`, a package of bench (e.g. `d2l`) that
registers an `Extension` when imported. It adds group keys of its own, may pick a group's
configurations instead of a grid (from an earlier suite's records), and may act before and
after training (reuse finished runs, run analyses). The core knows no extension by name; data
flows one way: suite → plan → runs → records → report. `member_of` makes a suite part of a
named set (`--suite d2l` runs its members in file-name order).
"""

from __future__ import annotations

import importlib
import itertools
import tomllib
from collections.abc import Callable
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
    # Each variant trains at its own gate budget (register_variant(gate=…)) over the above.
    variant_budget: bool = False

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
    "reference": Profile(
        "reference", 5, None, None, None, False,
        "5 seeds, the recipe's epochs, full data, the recipe's dataset (the committed answer; "
        "suites may set their own budgets)",
    ),
    "gate": Profile(
        "gate", 1, None, None, None, False,
        "1 seed, each variant at its gate budget (where it has left its initial plateau), "
        "full test set (CI gate)", variant_budget=True,
    ),
}

GROUP_KEYS = {
    "name", "question", "factor", "variants", "datasets", "set", "grid", "profiles",
    "published", "only_profiles",
}
PUBLISHED_KEYS = {"source", "metric", "note", "levels"}
SUITE_KEYS = {"description", "groups", "profiles", "extension", "member_of"}
PROFILE_KEYS = {"seeds", "num_epochs", "train_subset", "test_subset"}


class NeedsRecords(UsageError):
    """A suite whose runs are picked from an earlier suite's records, which do not exist yet."""


Choices = list[tuple[dict[str, Any], dict[str, Any] | None]]


@dataclass(frozen=True)
class Extension:
    """What a package adds to suites (registered by `register_extension` on import).

    - `keys` / `parse(where, group_table) -> extra`: group keys it owns, validated (with the
      rest of the table in view) into `Group.extra` (one-line UsageErrors);
    - `choices(group, suite_name, profile, results=, seeds=, overrides=, device=, n_seeds=)`:
      the (overrides, info) configurations of a group whose `extra` asks for them, instead of
      its grid (info["level"] is the recorded factor value), or a function of (variant,
      dataset) giving them per cell; either may raise NeedsRecords;
    - `sources(group)`: the suites whose records `choices` reads (for messages);
    - `before_train(todo, suite, profile_name, results, current) -> (todo, message)`: e.g.
      copy runs another suite already trained; `current(run, record)` says whether a record
      was made by this code;
    - `after_train(suite, profile, plan, results, data_root, force=, user_overrides=)`.
    """

    name: str
    keys: frozenset[str]
    parse: Callable[[str, dict[str, Any]], dict[str, Any]]
    # None back: the group's own grid; a callable back: (variant, dataset) → that cell's
    # configurations (e.g. a learning rate picked per variant and dataset)
    choices: Callable[..., Choices | Callable[[str, str], Choices] | None] | None = None
    sources: Callable[[Group], list[str]] | None = None
    before_train: Callable[..., tuple[list[PlannedRun], str | None]] | None = None
    after_train: Callable[..., object] | None = None


EXTENSIONS: dict[str, Extension] = {}


def register_extension(ext: Extension) -> Extension:
    """Strict, like the variant registry: a name or a group key is claimed once."""
    if ext.name in EXTENSIONS:
        raise ValueError(f"suite extension {ext.name!r} is already registered")
    taken = GROUP_KEYS.union(*(e.keys for e in EXTENSIONS.values()))
    if ext.keys & taken:
        raise ValueError(f"suite extension {ext.name!r}: keys {sorted(ext.keys & taken)} taken")
    EXTENSIONS[ext.name] = ext
    return ext


def get_extension(where: str, name: str) -> Extension:
    """The extension a suite names: the package bench.<name>, imported to register itself."""
    if name not in EXTENSIONS:
        if not name.isidentifier():
            raise UsageError(f"{where}.extension must be a package of bench, got {name!r}")
        try:
            importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            raise UsageError(f"{where}.extension: no package bench.{name}") from None
        if name not in EXTENSIONS:
            raise UsageError(f"{where}.extension: bench.{name} registers no suite extension")
    return EXTENSIONS[name]


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
    # A source's own numbers for the group's levels, shown beside ours by the report:
    # {source, metric, note, levels: [{level, value}]}, `level` as factor_value gives it.
    published: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the suite's extension's keys
    # Profiles the group runs in (None: all). E.g. a check that only means something at the
    # sources' full budgets stays out of the quick and gate profiles.
    only_profiles: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    groups: list[Group]
    profiles: dict[str, dict[str, Any]]
    extension: Extension | None = None
    member_of: str | None = None


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


def suite_sets(suites_dir: Path = SUITES_DIR) -> dict[str, list[str]]:
    """Named sets of suites (`member_of` in each member's file), members in name order."""
    sets: dict[str, list[str]] = {}
    for path in sorted(suites_dir.glob("*.toml")):
        try:
            member_of = tomllib.loads(path.read_text()).get("member_of")
        except tomllib.TOMLDecodeError:
            continue  # reported when the suite itself is loaded
        if isinstance(member_of, str):
            sets.setdefault(member_of, []).append(path.stem)
    return sets


def suite_names(name: str) -> list[str]:
    """The suites `--suite NAME` runs, in order: a suite set (d2l) stands for its members."""
    sets = suite_sets()
    if name in sets:
        return sets[name]
    avail = available_suites()
    if name in avail:
        return [name]
    members = {m for ms in sets.values() for m in ms}
    valid = [s for s in avail if s not in members] + list(sets)
    valid += [s for s in avail if s in members]
    raise UsageError(f"unknown suite {name!r}; valid: {', '.join(valid)}")


def _parse_published(where: str, raw: Any) -> dict[str, Any]:
    """A group's `published` table: what its source printed for each level of the factor."""
    _expect(where, raw, dict, "a table {source, metric, note, levels}")
    _check_keys(where, raw, PUBLISHED_KEYS)
    for k in ("source", "metric", "note"):
        _expect(f"{where}.{k}", raw.get(k, ""), str, "a string")
    levels = _expect(f"{where}.levels", raw.get("levels"), list, "a list of {level, value}")
    for i, lv in enumerate(levels):
        _expect(f"{where}.levels[{i}]", lv, dict, "a table {level, value}")
        _check_keys(f"{where}.levels[{i}]", lv, {"level", "value"})
        if "level" not in lv:
            raise UsageError(f"{where}.levels[{i}] has no level")
        _expect(f"{where}.levels[{i}].value", lv.get("value"), float, "a number in [0, 1]")
        if not 0.0 <= lv["value"] <= 1.0:
            raise UsageError(f"{where}.levels[{i}].value must be in [0, 1], got {lv['value']}")
    return dict(raw)


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
    ext = None
    if "extension" in raw:
        ext = get_extension(where, _expect(f"{where}.extension", raw["extension"], str,
                                           "a package name"))
    member_of = raw.get("member_of")
    if member_of is not None:
        _expect(f"{where}.member_of", member_of, str, "a suite set name")
    profiles = _parse_profiles(f"{where}.profiles", raw.get("profiles", {}))
    groups_raw = _expect(f"{where}.groups", raw.get("groups", []), list, "a list of tables")
    if not groups_raw:
        raise UsageError(f"{where}: has no [[groups]]")
    groups = []
    for i, g in enumerate(groups_raw):
        gw = f"{where} group {i + 1}"
        _expect(gw, g, dict, "a table")
        _check_keys(gw, g, GROUP_KEYS | (ext.keys if ext else frozenset()))
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
        only = g.get("only_profiles")
        if only is not None:
            _expect(f"{gw}.only_profiles", only, list, "a list of profile names")
            for pname in only:
                if pname not in PROFILES:
                    raise UsageError(f"{gw}.only_profiles: unknown profile {pname!r}; valid: "
                                     f"{', '.join(PROFILES)}")
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
                published=(_parse_published(f"{gw}.published", g["published"])
                           if "published" in g else None),
                extra=ext.parse(gw, g) if ext else {},
                only_profiles=tuple(only) if only is not None else None,
            )
        )
    return Suite(name=name, description=desc, groups=groups, profiles=profiles,
                 extension=ext, member_of=member_of)


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

    `results` is read only by groups whose extension picks their configurations from the
    records of another suite.
    """
    from variants import get_spec

    bad = [d for d in datasets or [] if d not in DATASET_NAMES]
    if bad:
        raise UsageError(f"unknown dataset {bad[0]!r}; valid: {', '.join(DATASET_NAMES)}")
    plan: list[PlannedRun] = []
    seen: dict[str, PlannedRun] = {}
    for group in suite.groups:
        if group.only_profiles is not None and profile.name not in group.only_profiles:
            continue
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
        per_cell: Callable[[str, str], Choices] | None = None
        ext = suite.extension
        if ext is not None and ext.choices is not None:
            picked = ext.choices(group, suite.name, profile, results=results, seeds=seeds,
                                 overrides=overrides, device=device, n_seeds=n_seeds)
            if callable(picked):
                per_cell = picked
            elif picked is not None:
                choices = list(picked)
        for vname in names:
            spec = get_spec(vname)
            vdefaults = {**pdefaults, **(spec.gate if profile.variant_budget else {})}
            for ds in _datasets_for(group, spec.recipe.dataset, profile):
                if datasets and ds not in datasets:
                    continue
                cell = choices if per_cell is None else list(per_cell(vname, ds))
                for combo_ov, info in cell:
                    ov = {**group.fixed, **combo_ov, **(overrides or {})}
                    fval = info["level"] if info else factor_value(group.factor, ov)
                    member = {"group": group.name, "question": group.question,
                              "factor": group.factor, "factor_value": fval}
                    if info:
                        member.update({k: v for k, v in info.items() if k != "level"})
                    for seed in range(n_seeds):
                        cfg = resolve_config(
                            vname, ds, seed, ov, profile_defaults=vdefaults, device=device
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
