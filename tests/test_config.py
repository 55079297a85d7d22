"""Config tree: defaults, YAML, composition, overrides, and errors naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmm_core.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_spec_values() -> None:
    cfg = Config()
    assert (cfg.cluster.k1, cfg.cluster.k2, cfg.cluster.eps, cfg.cluster.min_samples) == (
        30,
        6,
        0.6,
        4,
    )
    assert (cfg.cluster.joint_k1, cfg.cluster.joint_k2) == (40, 32)
    assert (cfg.memory.temperature, cfg.memory.momentum, cfg.memory.num_memories) == (
        0.05,
        0.1,
        4,
    )
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.step_size, cfg.train.gamma) == (
        3.5e-4,
        5e-4,
        20,
        0.1,
    )
    assert (cfg.sampler.visible_ids, cfg.sampler.visible_instances) == (8, 16)
    assert (cfg.sampler.infrared_ids, cfg.sampler.infrared_instances) == (16, 16)
    assert (cfg.match.sca_topk, cfg.match.sca_temperature, cfg.loss.lambda_sca) == (3, 0.05, 0.5)
    assert (cfg.data.height, cfg.data.width, cfg.model.gem_p) == (288, 144, 3.0)


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().seed = 3  # type: ignore[misc]


# sweep-*.yaml are sweep grids, not configs (tests/test_sweep.py loads them as grids).
SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("sweep-"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert isinstance(cfg, Config)


def test_regdb_config_carries_regdb_defaults() -> None:
    cfg = load_config(CONFIGS / "regdb.yaml")
    assert cfg.data.format == "regdb"
    assert (cfg.cluster.eps, cfg.cluster.joint_k1, cfg.cluster.joint_k2) == (0.3, 38, 18)
    assert cfg.train.iters_per_round == 100


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "ablation").glob("*.yaml")))
def test_ablation_configs_compose(name: str) -> None:
    cfg = load_config([CONFIGS / "synthetic-tiny.yaml", CONFIGS / "ablation" / name])
    assert cfg.model.arch == "resnet18"  # the base survives


def test_ablation_ladder_values() -> None:
    base = CONFIGS / "synthetic-tiny.yaml"
    baseline = load_config([base, CONFIGS / "ablation" / "baseline.yaml"])
    assert not baseline.cluster.joint and baseline.train.stage2_rounds == 0
    k1 = load_config([base, CONFIGS / "ablation" / "mmlm-k1.yaml"])
    assert k1.memory.num_memories == 1 and k1.loss.lambda_sca == 0
    full = load_config([base, CONFIGS / "ablation" / "mmm.yaml"])
    assert full.memory.num_memories == 4 and full.loss.lambda_sca == 0.5


def test_overrides_parse_yaml_scalars() -> None:
    cfg = load_config(
        None,
        ["cluster.eps=0.5", "train.amp=none", "model.arch=resnet18", "eval.sysu_shots=[1,10]"],
    )
    assert cfg.cluster.eps == 0.5 and cfg.train.amp == "none"
    assert cfg.model.arch == "resnet18" and cfg.eval.sysu_shots == (1, 10)


def test_int_accepted_for_float_but_not_reverse() -> None:
    assert load_config(None, ["cluster.eps=1"]).cluster.eps == 1.0
    with pytest.raises(ConfigError, match=r"'cluster.k1': expected an integer"):
        load_config(None, ["cluster.k1=2.5"])


def test_unknown_key_named_with_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster:\n  epsilon: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "bad.yaml" in str(info.value) and "'cluster.epsilon': unknown key" in str(info.value)
    assert info.value.path == "cluster.epsilon"


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match=r"'train.epochs': unknown key"):
        load_config(None, ["train.epochs=3"])
    with pytest.raises(ConfigError, match=r"'trainer': unknown section"):
        load_config(None, ["trainer.lr=3"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["train.lr"])


def test_choice_and_value_validation() -> None:
    with pytest.raises(ConfigError, match=r"'model.arch': expected one of"):
        load_config(None, ["model.arch=vgg"])
    with pytest.raises(ConfigError, match=r"'cluster.eps': a Jaccard radius"):
        config_from_dict({"cluster": {"eps": 1.5}})
    with pytest.raises(ConfigError, match=r"'data.synthetic.ids': needs at least 4"):
        config_from_dict({"data": {"synthetic": {"ids": 2}}})
    with pytest.raises(ConfigError, match=r"'train.amp': expected one of"):
        config_from_dict({"train": {"amp": "yes"}})
    with pytest.raises(ConfigError, match=r"'model.pretrained': ImageNet weights exist only"):
        config_from_dict({"model": {"width": 32}})
    with pytest.raises(ConfigError, match=r"'model.width': a multiple of 4"):
        config_from_dict({"model": {"width": 30, "pretrained": "none"}})
    with pytest.raises(ConfigError, match=r"'train.supervision': expected one of"):
        config_from_dict({"train": {"supervision": "labels"}})
    with pytest.raises(ConfigError, match=r"'cluster.joint_expansion': expected one of"):
        config_from_dict({"cluster": {"joint_expansion": "both"}})
    with pytest.raises(ConfigError, match=r"'train.schedule_per': expected one of"):
        config_from_dict({"train": {"schedule_per": "epoch"}})


def test_a_setting_added_later_keeps_earlier_fingerprints_at_its_old_behaviour() -> None:
    """train.schedule_per came after the demo references were made: at "stage" (what those
    runs did) it leaves the fingerprint as it was; at "run" the runs differ, so it changes."""
    import json

    from mmm_core.config import fingerprint

    cfg = load_config(CONFIGS / "synthetic-tiny.yaml")
    stored = json.loads((CONFIGS / "demo-reference.json").read_text())
    assert fingerprint(cfg) in stored
    assert fingerprint(cfg.replace(**{"train.schedule_per": "run"})) not in stored
    assert fingerprint(cfg.replace(**{"train.accumulate": 1})) in stored  # the same as before
    assert fingerprint(cfg.replace(**{"train.accumulate": 2})) not in stored
    with pytest.raises(ConfigError, match=r"train.accumulate"):
        config_from_dict({"train": {"accumulate": 0}})


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_dump_round_trip(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "synthetic-tiny.yaml", ["loss.lambda_sca=0.25"])
    dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert config_to_dict(cfg)["loss"]["lambda_sca"] == 0.25


def test_replace() -> None:
    cfg = Config().replace(**{"cluster.eps": 0.3, "seed": 7})
    assert cfg.cluster.eps == 0.3 and cfg.seed == 7 and Config().cluster.eps == 0.6
