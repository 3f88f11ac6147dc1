"""Resolved run configuration: recipe ← profile ← overrides, type-checked, hashed to a run id.

Like nanoGPT's configurator, overrides reject unknown keys and wrong types; unlike it, nothing
is exec'd: values are parsed with `ast.literal_eval` and checked against declared types.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from bench import device as dev
from bench.errors import UsageError
from variants import get_spec
from variants.registry import VariantError

DATASET_NAMES = ("mnist", "fashion-mnist")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "exponential", "lenet5_passes")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers; its hash (with the seed) is the run id."""

    variant: str
    dataset: str
    seed: int
    optimizer: str
    lr: float
    batch_size: int
    num_epochs: int
    loss: str
    init: str
    schedule: str
    gamma: float
    momentum: float
    weight_decay: float
    transform: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    train_subset: int | None = None
    test_subset: int | None = None
    eval_batch_size: int = 1024
    device: str = "cpu"
    deterministic: bool = True
    # Speed levers (bench perf measures them). Each is recorded because each can change bits.
    pack_seeds: bool = False  # train the seeds of one configuration as one vmapped model
    channels_last: bool = False
    compile: bool = False  # torch.compile; falls back to eager (and says so) where it fails
    cuda_graphs: bool = False  # CUDA only: torch.compile(mode="reduce-overhead")
    optimizer_impl: str = "foreach"  # "foreach" | "fused" | "for"
    amp_bf16: bool = False  # opt-in bf16 autocast; never the default: it changes the numbers
    # Model selection: the last `holdout` images of the training split are held out as a
    # validation split. The run trains on the others and every evaluation scores the held-out
    # images; the test split is never loaded (records name those metrics val_*).
    holdout: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        d = self.to_dict()
        for key, default in ID_OMITS_DEFAULT.items():  # fields added later keep old ids
            if d.get(key) == default:
                del d[key]
        blob = json.dumps(_jsonable(d), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Fields left out of the run id at their default, so that adding them changed no id.
ID_OMITS_DEFAULT: dict[str, Any] = {"holdout": None}
#: The size of both datasets' training split (SPEC §1); a holdout must leave images to train.
TRAIN_SPLIT_SIZE = 60_000


# Keys a user may set with --set or a suite grid, and their types.
TRAIN_KEYS: dict[str, Any] = {
    "optimizer": str,
    "lr": float,
    "batch_size": int,
    "num_epochs": int,
    "loss": str,
    "init": str,
    "schedule": str,
    "gamma": float,
    "momentum": float,
    "weight_decay": float,
    "train_subset": int | None,
    "test_subset": int | None,
    "eval_batch_size": int,
    "deterministic": bool,
    "pack_seeds": bool,
    "channels_last": bool,
    "compile": bool,
    "cuda_graphs": bool,
    "optimizer_impl": str,
    "amp_bf16": bool,
    "holdout": int | None,
}
OPTIMIZER_IMPLS = ("foreach", "fused", "for")


def config_key(config: dict[str, Any], *, without: tuple[str, ...] = ("seed",)) -> str:
    """A configuration's identity apart from `without` (by default the seed): what the seeds
    of one configuration share (packing, the d2l rules, the gate, fingerprints)."""
    return json.dumps({k: v for k, v in config.items() if k not in without}, sort_keys=True,
                      default=str)


def overrides_label(ov: dict[str, Any] | None, *, empty: str = "defaults") -> str:
    """`activation=tanh, channels=[24, 44]`: strings bare, the rest as JSON; `empty` if none."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in sorted((ov or {}).items())) or empty


def config_from_record(config: dict[str, Any]) -> RunConfig:
    """A record's config as a RunConfig; fields this checkout does not know are dropped
    (records outlive schema changes), missing ones take their defaults."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in config.items() if k in known})


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def parse_value(text: str) -> Any:
    """A --set value: a Python/JSON literal (0.1, [6, 16], true, none) or else a bare string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text.strip()


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`key=value` strings → dict; a malformed item is a UsageError."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise UsageError(f"--set expects key=value, got {item!r}")
        out[key] = parse_value(value)
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against type `tp`, allowing int→float and list→tuple; else UsageError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return coerce(key, value, arm)
            except UsageError:
                continue
        raise UsageError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise UsageError(f"{key} must be None, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise UsageError(f"{key} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            inner = args[0] if args else Any
            if inner is Any:
                return tuple(value)
            return tuple(coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value))
    elif tp is Any:
        return value
    raise UsageError(f"{key} must be {_type_name(tp)}, got {value!r}")


def model_param_types(variant: str) -> dict[str, Any]:
    """The builder's keyword types, from its annotations (the registry keeps them keyword-only)."""
    spec = get_spec(variant)
    hints = typing.get_type_hints(spec.builder)
    return {k: hints.get(k, type(v)) for k, v in spec.defaults.items()}


def resolve_config(
    variant: str,
    dataset: str | None,
    seed: int,
    overrides: dict[str, Any] | None = None,
    *,
    profile_defaults: dict[str, Any] | None = None,
    device: str = "cpu",
) -> RunConfig:
    """Recipe, then the profile's defaults, then user/suite overrides (which win)."""
    try:
        spec = get_spec(variant)
    except VariantError as e:
        raise UsageError(str(e)) from None
    recipe = spec.recipe
    dataset = dataset or recipe.dataset
    if dataset not in DATASET_NAMES:
        raise UsageError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASET_NAMES)}")
    values: dict[str, Any] = {
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "batch_size": recipe.batch_size,
        "num_epochs": recipe.num_epochs,
        "loss": recipe.loss,
        "init": recipe.init,
        "schedule": recipe.schedule,
        "gamma": recipe.gamma,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
    }
    values["pack_seeds"] = dev.packs_by_default(device)
    values.update(profile_defaults or {})
    model_types = model_param_types(variant)
    model_kwargs = dict(spec.defaults)
    for key, value in (overrides or {}).items():
        if key in TRAIN_KEYS:
            values[key] = coerce(key, value, TRAIN_KEYS[key])
        elif key in model_types:
            model_kwargs[key] = coerce(key, value, model_types[key])
        else:
            valid = sorted(TRAIN_KEYS) + sorted(model_types)
            raise UsageError(
                f"unknown override {key!r} for variant {variant!r}; valid: {', '.join(valid)}"
            )
    _check_choices(values)
    if values.get("cuda_graphs") and not dev.is_cuda(device):
        raise UsageError("cuda_graphs needs --device cuda")
    model_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()}
    return RunConfig(
        variant=variant,
        dataset=dataset,
        seed=int(seed),
        transform=dataclasses.asdict(recipe.transform),
        model=model_kwargs,
        device=device,
        **values,
    )


def _check_choices(values: dict[str, Any]) -> None:
    from variants import LOSSES
    from variants.init import INITS

    choices = {
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "loss": tuple(LOSSES),
        "init": tuple(INITS),
        "optimizer_impl": OPTIMIZER_IMPLS,
    }
    for key, valid in choices.items():
        if key in values and values[key] not in valid:
            raise UsageError(f"{key} must be one of {', '.join(valid)}; got {values[key]!r}")
    positive = ("lr", "batch_size", "num_epochs", "eval_batch_size")
    for key in positive:
        if key in values and not values[key] > 0:
            raise UsageError(f"{key} must be > 0, got {values[key]!r}")
    for key in ("train_subset", "test_subset"):
        if values.get(key) is not None and values[key] < 1:
            raise UsageError(f"{key} must be ≥ 1 or none, got {values[key]!r}")
    h = values.get("holdout")
    if h is not None and not 1 <= h < TRAIN_SPLIT_SIZE:
        raise UsageError(f"holdout must be none or between 1 and {TRAIN_SPLIT_SIZE - 1} "
                         f"(images of the training split held out), got {h!r}")
    if not values["gamma"] > 0:
        raise UsageError(f"gamma must be > 0, got {values['gamma']!r}")
