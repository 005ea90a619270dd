from pathlib import Path

import pytest

from mdm.config import Config, ConfigError, from_dict, load, to_dict
from mdm.derived import count_config, derive, lr_factor

REPO = Path(__file__).resolve().parents[1]
ALL_YAML = sorted(p for p in (REPO / "configs").glob("*.yaml"))


def test_defaults_load():
    cfg = load()
    assert isinstance(cfg, Config) and cfg.objective.name == "mdlm"


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    cfg = load([path])
    assert from_dict(to_dict(cfg)) == cfg


def test_overrides_come_last(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("model:\n  depth: 3\n")
    assert load([f], ["model.depth=5"]).model.depth == 5
    assert load([f]).model.depth == 3


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match="model.dpeth"):
        load([], ["model.dpeth=3"])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*learning_rate"):
        load([f])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.global_batch"):
        load([], ["train.global_batch=lots"])


def test_unknown_registry_name_lists_choices():
    with pytest.raises(ConfigError, match=r"objective.name='mdln'.*mdlm"):
        load([], ["objective.name=mdln"])
    with pytest.raises(ConfigError, match=r"schedule.name.*loglinear"):
        load([], ["schedule.name=cosine"])


def test_exactly_one_budget():
    with pytest.raises(ConfigError, match="exactly one"):
        load([], ["train.tokens=1000"])  # max_steps is also set by default
    cfg = load([], ["train.max_steps=null", "train.tokens=100000"])
    assert cfg.train.tokens == 100000


def test_derived_values():
    cfg = load(
        [], ["train.max_steps=null", "train.tokens=1000000", "train.global_batch=32", "train.micro_batch=8"]
    )
    c = count_config(cfg.model, 4160)
    d = derive(cfg, c, world_size=2)
    assert d.per_device_batch == 16 and d.micro_batch == 8 and d.grad_accum == 2
    assert d.max_steps == -(-1_000_000 // (32 * cfg.model.seq_len))
    assert d.warmup_steps == round(0.05 * d.max_steps)
    # FLOP budget -> steps
    cfg2 = load([], ["train.max_steps=null", f"train.flops={d.total_flops}"])
    assert derive(cfg2, c, 1).max_steps == d.max_steps
    with pytest.raises(ConfigError, match="micro_batch"):
        derive(load([], ["train.micro_batch=5"]), c, 1)


def test_lr_schedules():
    cfg = load([], ["train.max_steps=100", "optim.warmup_steps=10"])
    d = derive(cfg, count_config(cfg.model, 4160), 1)
    assert lr_factor(0, d, "cosine", 0.1, 0.2) == pytest.approx(0.1)
    assert lr_factor(9, d, "cosine", 0.1, 0.2) == pytest.approx(1.0)
    assert lr_factor(100, d, "cosine", 0.1, 0.2) == pytest.approx(0.1)
    assert lr_factor(50, d, "wsd", 0.1, 0.2) == 1.0
    assert lr_factor(99, d, "wsd", 0.1, 0.2) == pytest.approx(0.1)


def test_run_name_ignores_other_objectives_sections():
    from mdm.rundir import run_name

    base = run_name(load([], ["objective.name=mdlm"]))
    assert run_name(load([], ["objective.name=mdlm", "objective.ccdd.d_cont=7"])) == base
    assert run_name(load([], ["objective.name=mdlm", "model.depth=5"])) != base
    ccdd = ["objective.name=ccdd", "objective.ccdd.encoder_run=x"]
    assert run_name(load([], ccdd)) != run_name(load([], [*ccdd, "objective.ccdd.d_cont=7"]))
