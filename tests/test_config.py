"""Config resolution, override parsing and suite expansion."""

from __future__ import annotations

import pytest

from bench.config import coerce, parse_assignments, parse_value, resolve_config
from bench.errors import UsageError
from bench.suites import PROFILES, expand, load_suite, parse_suite


def test_recipe_is_the_default() -> None:
    cfg = resolve_config("lenet_d2l", None, 0)
    assert (cfg.dataset, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.num_epochs) == (
        "fashion-mnist", "sgd", 0.9, 256, 10)
    assert cfg.init == "xavier_uniform_zero_bias" and cfg.loss == "cross_entropy"
    assert cfg.model["activation"] == "sigmoid" and cfg.model["pool"] == "avg"


def test_overrides_win_over_profile_and_recipe() -> None:
    cfg = resolve_config("lenet_d2l", "mnist", 3, {"lr": 1, "channels": [8, 20]},
                         profile_defaults={"num_epochs": 2, "lr": 0.5})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.num_epochs == 2 and cfg.dataset == "mnist" and cfg.seed == 3
    assert cfg.model["channels"] == [8, 20]


def test_run_id_depends_on_config_and_seed_only() -> None:
    a = resolve_config("lenet_d2l", None, 0)
    assert a.run_id() == resolve_config("lenet_d2l", None, 0).run_id()
    assert a.run_id() != resolve_config("lenet_d2l", None, 1).run_id()
    assert a.run_id() != resolve_config("lenet_d2l", None, 0, {"lr": 0.2}).run_id()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"nope": 1}, "unknown override 'nope'"),
        ({"lr": "fast"}, "lr must be float"),
        ({"batch_size": 1.5}, "batch_size must be int"),
        ({"batch_size": True}, "batch_size must be int"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"channels": "six"}, "channels must be"),
        ({"channels": [6, "x"]}, "channels[1] must be int"),
        ({"train_subset": 0}, "train_subset must be"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides: dict, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        resolve_config("lenet_modern", None, 0, overrides)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unknown_variant_and_dataset() -> None:
    with pytest.raises(UsageError, match="unknown variant 'lenet9'; valid: .*lenet_d2l"):
        resolve_config("lenet9", None, 0)
    with pytest.raises(UsageError, match="unknown dataset 'cifar'"):
        resolve_config("lenet_d2l", "cifar", 0)


def test_parse_values() -> None:
    assert parse_assignments(["lr=0.05", "channels=[6,16]", "activation=relu", "padding=none",
                              "deterministic=false"]) == {
        "lr": 0.05, "channels": [6, 16], "activation": "relu", "padding": None,
        "deterministic": False}
    assert parse_value("1e-3") == 0.001
    with pytest.raises(UsageError, match="key=value"):
        parse_assignments(["lr"])
    assert coerce("x", [1, 2], tuple[int, ...]) == (1, 2)
    assert coerce("x", None, int | None) is None


def test_variants_suite_covers_every_default_variant() -> None:
    from variants import list_variants

    suite = load_suite("variants")
    plan = expand(suite, PROFILES["quick"])
    assert sorted({r.config.variant for r in plan}) == list_variants(default_only=True)
    assert len(plan) == 2 * len(list_variants(default_only=True))
    assert len({r.run_id for r in plan}) == len(plan)
    full = expand(suite, PROFILES["full"])
    zoo = [r for r in full if r.group == "zoo"]
    assert len(zoo) == 5 * 2 * len(list_variants(default_only=True))
    # the fidle notebook's own MLP, only at the sources' budgets (only_profiles)
    bug = [r for r in full if r.group == "source_bug"]
    assert {r.config.variant for r in bug} == {"mlp_softmax_dim0"} and len(bug) == 5 * 2
    assert len(full) == len(zoo) + len(bug)
    assert {r.group for r in plan} == {"zoo"}
    smoke = expand(suite, PROFILES["smoke"])
    assert all(r.config.train_subset == 10_000 and r.config.num_epochs == 1 for r in smoke)


def test_suite_parsing_errors() -> None:
    with pytest.raises(UsageError, match="unknown key"):
        parse_suite("x", '[[groups]]\nvariants = "*"\nbogus = 1\n')
    with pytest.raises(UsageError, match="empty list"):
        parse_suite("x", '[[groups]]\nvariants = "*"\ngrid = { lr = [] }\n')
    with pytest.raises(UsageError, match="no \\[\\[groups\\]\\]"):
        parse_suite("x", 'description = "nothing"\n')
    with pytest.raises(UsageError, match="invalid TOML"):
        parse_suite("x", "[[groups]\n")
    with pytest.raises(UsageError, match="must be a list"):
        parse_suite("x", '[[groups]]\ngrid = { lr = 0.1 }\n')


def test_a_group_can_run_in_some_profiles_only() -> None:
    suite = parse_suite("t", '[[groups]]\nvariants = "mlp"\n\n[[groups]]\nname = "late"\n'
                             'variants = "cnn_fidle"\nonly_profiles = ["reference"]\n')
    assert {r.config.variant for r in expand(suite, PROFILES["quick"])} == {"mlp"}
    assert {r.config.variant for r in expand(suite, PROFILES["reference"])} == {
        "mlp", "cnn_fidle"}
    with pytest.raises(UsageError, match="only_profiles: unknown profile 'nightly'"):
        parse_suite("t", '[[groups]]\nvariants = "mlp"\nonly_profiles = ["nightly"]\n')
    with pytest.raises(UsageError, match="only_profiles must be a list"):
        parse_suite("t", '[[groups]]\nvariants = "mlp"\nonly_profiles = "full"\n')


def test_grid_expansion_and_bad_model_option() -> None:
    suite = parse_suite("t", '[[groups]]\nvariants = "lenet_tweakable"\nfactor = "kernel_size"\n'
                             'grid = { kernel_size = [3, 5, 7] }\n')
    plan = expand(suite, PROFILES["quick"])
    assert len(plan) == 3 * 2
    assert sorted({r.factor_value for r in plan}) == [3, 5, 7]
    bad = parse_suite("t", '[[groups]]\nvariants = "lenet_tweakable"\n'
                           'grid = { channels = [[6, 16, 22, 28, 32]] }\n')
    with pytest.raises(UsageError, match="no spatial extent"):
        expand(bad, PROFILES["quick"])
