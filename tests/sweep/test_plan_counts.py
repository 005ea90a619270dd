"""The sweep planner counts from the config (mdm/sweep/counts.py): the same runs, names and numbers as
the build step gave, without preparing data, building a network, loading a checkpoint or importing
Lightning (nor torch, for objectives counted as the plain backbone)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mdm.config import Config, MixtureSource, declared_names, load, to_dict
from mdm.data.meta import load_meta
from mdm.derived import backbone_counts
from mdm.sweep.counts import declared_objectives, expected_vocab, objective_counts, plan_counts, planned_vocab
from mdm.sweep.plan import build_plan
from mdm.sweep.spec import load_spec
from mdm.vocab import Vocab
from tests.fresh import fresh_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEBUG_YAML = REPO / "configs" / "debug.yaml"
# objectives counted as the plain backbone (Objective.config_counts not overridden)
PLAIN = sorted(n for n, d in declared_objectives().items() if d.counted_by == "Objective")


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
    n, says_so, heavy = fresh_json(code, tmp_path, {"MDM_DATA_DIR": str(data)})
    assert n > 0 and says_so and heavy == []
    assert list(data.iterdir()) == []  # nothing prepared


def test_declarations_read_from_the_source_are_the_classes():
    """What the planner reads from mdm/diffusion/*.py without importing it is what the imported classes
    hold: every registered objective, its time conditioning, and the class whose config_counts it uses."""
    from mdm.diffusion import OBJECTIVES

    shipped = {n: c for n, c in OBJECTIVES.items() if c.__module__.startswith("mdm.diffusion.")}
    declared = declared_objectives()
    assert sorted(declared) == sorted(shipped)
    for name, cls in shipped.items():
        d = declared[name]
        owner = next(k for k in cls.__mro__ if "config_counts" in vars(k))
        assert (d.cls, d.default_time_conditioning, d.supports_time_conditioning, d.counted_by) == (
            cls.__name__,
            cls.default_time_conditioning,
            cls.supports_time_conditioning,
            owner.__name__,
        ), name
    assert {"mdlm", "ar", "radd", "sedd"} <= set(PLAIN) and not {"edlm_nce", "ccdd", "edlm_ar"} & set(PLAIN)


def test_an_objective_with_its_own_network_or_passes_counts_itself():
    """The default config_counts is the plain backbone: an objective that changes the network it trains,
    how it is counted or its extra passes must declare its own count."""
    from mdm.diffusion import OBJECTIVES, Objective

    for name, cls in OBJECTIVES.items():
        own = (
            cls.build_model is not Objective.build_model
            or cls.extra_flops_per_token is not Objective.extra_flops_per_token
            or cls.count_options != {}
            or cls.frozen_parts != ()
        )
        if own:
            assert "config_counts" in {a for k in cls.__mro__[:-2] for a in vars(k)}, name


@pytest.mark.parametrize("name", PLAIN)
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
    assert got.counts == type(obj).config_counts(cfg, vocab, None)


@pytest.mark.parametrize("name", PLAIN)
def test_the_torch_free_count_is_the_classes(name, monkeypatch):
    """Without mdm.diffusion imported the planner counts a plain objective from its declarations: the
    same as the class's config_counts."""
    from mdm.diffusion import OBJECTIVES

    vocab = Vocab(size=128, mask_id=100)
    for over in ([], ["model.time_conditioning=false", "model.tie_embeddings=false"]):
        cfg = load([DEBUG_YAML], [f"objective.name={name}", *over])
        want = OBJECTIVES[name].config_counts(cfg, vocab, None)
        monkeypatch.delitem(sys.modules, "mdm.diffusion.registry")
        assert objective_counts(cfg, vocab) == want
        monkeypatch.undo()


# --- objectives built on a frozen run: counted from the configs, equal to the built network's --------------
def _edlm_nce(tmp_path, base_over, over, negatives):
    from tests.edlm.conftest import synthetic_vocab, write_fake_run

    base = write_fake_run(tmp_path / "base", base_over)
    cfg = load(
        [DEBUG_YAML, REPO / "configs" / "edlm_nce.yaml"],
        [f"objective.edlm.base_run={base}", f"objective.edlm.nce_negatives_per_positive={negatives}", *over],
    )
    return cfg, synthetic_vocab(cfg.data.synthetic.vocab)


def _ccdd(tmp_path, enc_over, over):
    from tests.edlm.conftest import synthetic_vocab, write_fake_run

    enc = write_fake_run(tmp_path / "encoder", enc_over)
    cfg = load([DEBUG_YAML], ["objective.name=ccdd", f"objective.ccdd.encoder_run={enc}", *over])
    return cfg, synthetic_vocab(cfg.data.synthetic.vocab)


EDLM_CASES = [
    ([], [], 1),
    ([], [], 3),
    (["objective.name=radd"], [], 2),
    (["model.time_conditioning=true"], ["model.time_conditioning=true"], 1),
]
CCDD_CASES = [
    ([], ["objective.ccdd.d_cont=8"]),
    ([], ["objective.ccdd.encoder=hidden", "objective.ccdd.encoder_layer=1"]),
    (["model.time_conditioning=true"], ["objective.ccdd.encoder=hidden", "objective.ccdd.encoder_layer=-1"]),
    (["model.time_conditioning=true"], ["objective.ccdd.encoder=hidden", "objective.ccdd.encoder_layer=0"]),
    (
        ["model.depth=3"],
        ["objective.ccdd.encoder=hidden", "model.time_conditioning=true", "objective.ccdd.d_cont=5"],
    ),
    ([], ["objective.ccdd.continuous=false"]),
]


def _built_counts(cfg, vocab):
    """What `mdm train` records: the objective built with its frozen parts, its network on the meta device."""
    import torch

    from mdm.loading import build_objective

    obj = build_objective(cfg, vocab)
    with torch.device("meta"):
        model = obj.build_model(cfg, vocab)
    return obj.counts(model)


@pytest.mark.parametrize("base_over,over,negatives", EDLM_CASES)
def test_edlm_nce_config_counts_equal_the_built_network(tmp_path, base_over, over, negatives):
    cfg, vocab = _edlm_nce(tmp_path, base_over, over, negatives)
    want = _built_counts(cfg, vocab)
    assert want.extra_flops_per_token > negatives * want.forward_flops_per_token  # base and negatives
    assert plan_counts(cfg, (vocab, True)).counts == want


@pytest.mark.parametrize("enc_over,over", CCDD_CASES)
def test_ccdd_config_counts_equal_the_built_network(tmp_path, enc_over, over):
    cfg, vocab = _ccdd(tmp_path, enc_over, over)
    want = _built_counts(cfg, vocab)
    assert plan_counts(cfg, (vocab, True)).counts == want
    assert (want.extra_flops_per_token != 0) == cfg.objective.ccdd.continuous


def test_config_counts_of_frozen_runs_that_do_not_fit(tmp_path):
    cfg, vocab = _ccdd(tmp_path, [], [f"objective.ccdd.encoder_run={tmp_path / 'nope'}"])
    with pytest.raises(ValueError, match="objective.ccdd.encoder_run=.*nope"):
        plan_counts(cfg, (vocab, True))
    bare = tmp_path / "bare.ckpt"
    (tmp_path / "encoder" / "checkpoints" / "last.ckpt").rename(bare)
    cfg, vocab = _ccdd(tmp_path / "b", [], [f"objective.ccdd.encoder_run={bare}"])
    with pytest.raises(ValueError, match="objective.ccdd.encoder_run=.*bare.ckpt.*config.yaml"):
        plan_counts(cfg, (vocab, True))
    cfg, vocab = _edlm_nce(tmp_path, ["objective.name=ar"], [], 1)
    with pytest.raises(ValueError, match="objective.edlm.base_run=.*'ar'.*masked diffusion"):
        plan_counts(cfg, (vocab, True))
    cfg, vocab = _edlm_nce(tmp_path / "d", ["model.depth=3"], [], 1)
    with pytest.raises(ValueError, match="model.depth: 2 vs 3"):
        plan_counts(cfg, (vocab, True))


def test_planning_edlm_nce_and_ccdd_loads_no_checkpoint_and_imports_no_lightning(tmp_path):
    """In a fresh interpreter with torch.load refusing: the counts of edlm_nce and ccdd runs (frozen runs on
    disk), no data prepared, neither Lightning nor the build step (mdm.runprep) nor the run loader imported."""
    runs = []
    for i, (base_over, over, nu) in enumerate(EDLM_CASES[:2]):
        cfg, _ = _edlm_nce(tmp_path / f"e{i}", base_over, over, nu)
        runs.append((to_dict(cfg), plan_counts(cfg).counts.flops_per_token))
    for i, (enc_over, over) in enumerate(CCDD_CASES[1:3]):
        cfg, _ = _ccdd(tmp_path / f"c{i}", enc_over, over)
        runs.append((to_dict(cfg), plan_counts(cfg).counts.flops_per_token))
    data = tmp_path / "data"
    data.mkdir()
    code = (
        "import json, sys\n"
        "import torch\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('a checkpoint was loaded')\n"
        "torch.load = refuse\n"
        "from mdm.config import from_dict\n"
        "from mdm.sweep.counts import plan_counts\n"
        f"runs = json.loads({json.dumps(json.dumps([r[0] for r in runs]))})\n"
        "flops = [plan_counts(from_dict(r)).counts.flops_per_token for r in runs]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')"
        " or m in ('mdm.runprep', 'mdm.loading', 'mdm.train', 'mdm.module', 'mdm.ccdd_encoder'))\n"
        "print(json.dumps([flops, heavy]))\n"
    )
    flops, heavy = fresh_json(code, REPO, {"MDM_DATA_DIR": str(data)})
    assert flops == [r[1] for r in runs] and heavy == []
    assert list(data.iterdir()) == []  # nothing prepared


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
