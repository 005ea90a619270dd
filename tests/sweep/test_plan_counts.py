"""The sweep planner counts from the config (mdm/sweep/counts.py): the same runs, names and numbers as
the build step gave, without preparing data, building a network or importing torch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mdm.config import Config, MixtureSource, declared_names, load, to_dict
from mdm.data.meta import load_meta
from mdm.derived import backbone_counts
from mdm.sweep.counts import BACKBONE_OBJECTIVES, expected_vocab, plan_counts, planned_vocab
from mdm.sweep.plan import build_plan
from mdm.sweep.spec import load_spec
from mdm.vocab import Vocab

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_demo_plan_is_the_one_frozen_before_counting_from_the_config():
    """Run names (so the directories finished runs are found in), counts, steps, lr, dropped pairs and
    warnings of the demo spec, frozen from the planner that built every model (mdm.runprep.prepare_run)
    with the data prepared. Here the data is not prepared (the session's empty data cache)."""
    frozen = json.loads((HERE / "demo_frozen_plan.json").read_text())
    plan = build_plan(load_spec(HERE / "demo_frozen.yaml"))
    rows = [
        [r.name, r.params_total, r.params_non_embedding, r.flops_per_token, r.steps, r.tokens, r.lr]
        for r in plan.runs
    ]
    assert rows == frozen["rows"]
    assert plan.dropped == frozen["dropped"]
    assert plan.warnings == frozen["warnings"]


def test_status_and_plan_prepare_nothing_and_import_neither_torch_nor_lightning(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    code = (
        "import json, sys\n"
        "from mdm.sweep.spec import load_spec\n"
        "from mdm.sweep.plan import build_plan, format_plan\n"
        "from mdm.sweep.status import format_status, sweep_states\n"
        "import mdm.sweep.collect\n"
        f"plan = build_plan(load_spec({str(REPO / 'configs' / 'sweeps' / 'demo.yaml')!r}))\n"
        "format_status(plan, sweep_states(plan)); text = format_plan(plan)\n"
        "print(json.dumps([len(plan.runs), 'data not prepared' in text,"
        " sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'pytorch_lightning'))]))\n"
    )
    env = {**__import__("os").environ, "MDM_DATA_DIR": str(data)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    n, says_so, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert n > 0 and says_so and heavy == []
    assert list(data.iterdir()) == []  # nothing prepared


def test_the_table_is_the_registry():
    """BACKBONE_OBJECTIVES holds exactly the registered objectives that train the plain backbone with one
    forward and backward per token, with their default and allowed time conditioning."""
    from mdm.diffusion import OBJECTIVES, Objective

    plain = {
        name: (cls.default_time_conditioning, cls.supports_time_conditioning)
        for name, cls in OBJECTIVES.items()
        if cls.build_model is Objective.build_model
        and cls.extra_flops_per_token is Objective.extra_flops_per_token
        and cls.count_options == {}
        and not cls.builds_on_runs
    }
    plain.pop("edlm_ar")  # trains nothing: its constructor refuses (planning it fails the same way)
    assert plain == BACKBONE_OBJECTIVES


@pytest.mark.parametrize("name", sorted(BACKBONE_OBJECTIVES))
@pytest.mark.parametrize(
    "over",
    [
        [],
        ["model.tie_embeddings=false"],
        ["model.depth=3", "model.d_model=48", "model.head_dim=16", "model.cond_dim=24"],
        ["model.time_conditioning=true", "model.mlp_ratio=2"],
        ["model.time_conditioning=false", "model.depth=1", "model.seq_len=16"],
    ],
)
def test_config_counts_equal_the_objectives_on_the_built_network(name, over):
    import torch

    from mdm.diffusion import build_objective

    cfg = load([REPO / "configs" / "debug.yaml"], [f"objective.name={name}", *over])
    vocab = Vocab(size=128, mask_id=100)
    try:
        obj = build_objective(cfg, vocab)
    except ValueError as e:  # time conditioning the objective refuses: the planner refuses it too
        with pytest.raises(ValueError, match="takes no time conditioning"):
            plan_counts(cfg, (vocab, True))
        assert "time conditioning" in str(e)
        return
    with torch.device("meta"):
        model = obj.build_model(cfg, vocab)
    got = plan_counts(cfg, (vocab, True))
    assert got.counts == obj.counts(model)
    assert got.counts.flops_per_token == obj.counts(model).flops_per_token


def test_backbone_counts_by_hand():
    """2 blocks of width 64, MLP 4x, vocabulary 128, tied, no time conditioning."""
    cfg = load([], ["model.depth=2", "model.d_model=64", "model.n_heads=2", "model.mlp_ratio=4"]).model
    c = backbone_counts(cfg, 128, time_conditioning=False)
    assert c.n_matmul == 2 * 12 * 64 * 64 + 128 * 64
    assert c.params_embedding == (1 if cfg.tie_embeddings else 2) * 128 * 64
    assert c.params_total == c.params_embedding + 2 * 12 * 64 * 64 + 5 * 64
    assert c.n_cond == 0


def test_expected_vocab_is_the_prepared_one(tmp_path, monkeypatch):
    from mdm.data.datamodule import ensure_prepared

    monkeypatch.setenv("MDM_DATA_DIR", str(tmp_path))  # nothing prepared yet

    cfg = load(
        [REPO / "configs" / "debug.yaml"],
        ["data.synthetic.num_tokens=20000", "data.synthetic.eval_tokens=4000"],
    )
    assert planned_vocab(cfg.data) == (expected_vocab(cfg.data), False)
    d = ensure_prepared(cfg.data, progress=False)
    assert planned_vocab(cfg.data) == (Vocab.from_meta(load_meta(d)), True)
    got, meta = expected_vocab(cfg.data), Vocab.from_meta(load_meta(d))
    assert (got.size, got.mask_id) == (meta.size, meta.mask_id)  # what the counts use (no special ids)


def test_expected_vocab_of_the_recipes():
    base = Config().data
    assert expected_vocab(dataclasses.replace(base, name="books", tokenizer="char", vocab_size=256)) == Vocab(
        256, 255
    )
    assert expected_vocab(dataclasses.replace(base, name="books", tokenizer="bpe", vocab_size=4096)) == Vocab(
        4096, 4095
    )
    assert expected_vocab(dataclasses.replace(base, name="owt", tokenizer="gpt2")) == Vocab(50304, 50257)


def test_config_names_are_known_without_importing_the_objectives():
    from mdm.diffusion.registry import OBJECTIVES, SCHEDULES

    assert declared_names() == {"objective": tuple(sorted(OBJECTIVES)), "schedule": tuple(sorted(SCHEDULES))}


def _omegaconf_dict(cfg):
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_to_dict_is_omegaconfs(path):
    cfg = load([path])
    assert repr(to_dict(cfg)) == repr(_omegaconf_dict(cfg))  # types too: 1 vs 1.0 hash differently


def test_to_dict_is_omegaconfs_for_hand_built_configs():
    cfg = Config()
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, flops=10**10, max_steps=None),
        optim=dataclasses.replace(cfg.optim, lr=1, betas=(1, 2)),
        data=dataclasses.replace(cfg.data, mixture=[MixtureSource(name="books", weight=2)]),
    )
    assert repr(to_dict(cfg)) == repr(_omegaconf_dict(cfg))
    assert isinstance(to_dict(cfg)["train"]["flops"], float)
