"""Objectives own their options (mdm/options.py): declared sections, generic choice checks, run names
derived from the declarations, and a toy objective added by one file + one YAML (tests/toy_objective.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdm import options
from mdm.config import Config, ConfigError, load
from mdm.rundir import RunDir, run_name
from mdm.sweep.plan import build_plan
from mdm.sweep.spec import load_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FROZEN = json.loads((HERE / "objective_options_names.json").read_text())
# Configs the old code named but no objective could build (its __init__ refused them); now refused at load.
REFUSED = {
    "objective.graph=uniform": "objective.graph='uniform' is not valid for radd; choose one of: absorb",
    "objective.loss=any_order": "objective.loss='any_order' is not valid for sedd; choose one of: default, dse",
}


def _split(key: str) -> tuple[list[str], list[str]]:
    words = key.split()
    return [w for w in words if w.endswith(".yaml")], [w for w in words if not w.endswith(".yaml")]


def _refusal(key: str) -> str | None:
    files, over = _split(key)
    objective = load(files).objective.name
    for o in over:
        msg = REFUSED.get(o)
        if msg and f"for {objective};" in msg:
            return msg
    return None


def _check_frozen_names() -> int:
    checked = 0
    for key, frozen in FROZEN["configs"].items():
        files, over = _split(key)
        msg = _refusal(key)
        if msg:
            with pytest.raises(ConfigError) as e:
                load(files, over)
            assert str(e.value) == msg
            continue
        assert run_name(load(files, over)) == frozen, key
        checked += 1
    for spec, names in FROZEN["sweeps"].items():
        assert [r.name for r in build_plan(load_spec(REPO / spec)).runs] == names, spec
        checked += len(names)
    return checked


def test_run_names_of_every_shipped_config_are_the_ones_before_objectives_owned_options():
    """Every config under configs/ (alone and over debug.yaml, with options of other objectives set) and
    the tiny and isoflop-gpu sweeps keep the names computed at 747184a (the demo's are frozen in tests/sweep)."""
    assert _check_frozen_names() == 84 + 12 + 48


@pytest.mark.parametrize(
    "name, over, msg",
    [
        (
            "radd",
            "objective.loss=t_dce_x",
            "objective.loss='t_dce_x' is not valid for radd; choose one of: "
            "default, t_dce, lambda_dce, any_order",
        ),
        ("radd", "objective.graph=uniform", REFUSED["objective.graph=uniform"]),
        ("sedd", "objective.loss=any_order", REFUSED["objective.loss=any_order"]),
        (
            "sedd",
            "objective.graph=absorbing",
            "objective.graph='absorbing' is not valid for sedd; choose one of: absorb, uniform",
        ),
        (
            "ccdd",
            "objective.ccdd.process=ode",
            "objective.ccdd.process='ode' is not valid for ccdd; choose one of: vp, flow",
        ),
        (
            "ccdd",
            "objective.ccdd.encoder_input=noisy",
            "objective.ccdd.encoder_input='noisy' is not valid for ccdd; choose one of: clean, masked",
        ),
    ],
)
def test_a_bad_choice_is_one_line_naming_the_key_and_the_choices(name, over, msg):
    with pytest.raises(ConfigError) as e:
        load([], [f"objective.name={name}", over])
    assert str(e.value) == msg
    # a config built by hand is refused by the objective itself, with the same line
    from mdm.diffusion import build_objective
    from mdm.vocab import Vocab

    cfg = load([], [f"objective.name={name}"])
    key, value = over.split("=")
    node = cfg.objective
    for part in key.split(".")[1:-1]:
        node = getattr(node, part)
    setattr(node, key.split(".")[-1], value)
    with pytest.raises(ConfigError) as e:
        build_objective(cfg, Vocab(size=20, mask_id=16))
    assert str(e.value) == msg


def test_options_of_an_objective_not_trained_are_not_checked_nor_named():
    """As before: MDLM ignores objective.loss and CCDD's section (the flat keys are in every name)."""
    assert load([], ["objective.ccdd.process=ode"]).objective.ccdd.process == "ode"
    plain = run_name(load([]))
    assert run_name(load([], ["objective.ccdd.d_cont=7", "objective.edlm.window=0.5"])) == plain
    assert run_name(load([], ["objective.loss=t_dce"])) != plain  # a flat key: hashed for every objective
    assert run_name(load([], ["objective.name=ccdd", "objective.ccdd.d_cont=7"])) != run_name(
        load([], ["objective.name=ccdd"])
    )


def test_the_sections_are_the_objectives_declarations():
    from mdm.diffusion import OBJECTIVES
    from mdm.diffusion.graphs import GRAPHS
    from mdm.diffusion.sedd_options import SEDD_GRAPHS

    declared = {(s.owner, s.cls) for s in options.sections()}
    assert declared == {(n, c.options) for n, c in OBJECTIVES.items() if c.options is not None}
    assert options.section_owners() == {"edlm": "edlm_nce", "ccdd": "ccdd"}
    assert tuple(sorted(GRAPHS)) == SEDD_GRAPHS
    fields = [f.name for f in dataclasses.fields(Config().objective)]
    assert fields == ["name", "t_min", "antithetic", "loss", "graph", "ccdd", "edlm"]


def test_only_the_old_flat_keys_may_sit_directly_under_objective():
    @dataclasses.dataclass
    class Wide:
        temperature: float = 1.0

    with pytest.raises(ValueError, match="only loss, graph may sit directly under objective"):
        options.objective_options("wide", None)(Wide)
    assert "wide" not in {s.owner for s in options.SECTIONS}


def test_loading_a_config_with_options_imports_no_torch():
    code = (
        "import sys; from mdm.config import load; from mdm.rundir import run_name\n"
        "cfg = load([], ['objective.name=ccdd', 'objective.ccdd.process=flow'])\n"
        "print(cfg.objective.ccdd.process, run_name(cfg), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    process, name, torch_loaded = out.stdout.split()
    assert (process, torch_loaded) == ("flow", "False")
    assert name == run_name(load([], ["objective.name=ccdd", "objective.ccdd.process=flow"]))


# -- a new objective: one file (tests/toy_objective.py) + one YAML (tests/toy_objective.yaml) -------------
TOY_YAML = HERE / "toy_objective.yaml"
DEBUG_YAML = REPO / "configs" / "debug.yaml"


@pytest.fixture
def toy():
    """Registers the toy objective and its options for one test, and forgets both after."""
    from mdm.diffusion.registry import OBJECTIVES

    spec = importlib.util.spec_from_file_location("toy_objective", HERE / "toy_objective.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_objective"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        OBJECTIVES.pop("toy", None)
        options.forget("toy")
        sys.modules.pop("toy_objective", None)


def test_toy_trains_on_the_debug_config_with_its_defaults_exactly_mdlm(toy, tmp_path):
    from mdm.train import train

    runs = [f"train.runs_dir={tmp_path / 'runs'}", "train.max_steps=3", "train.val_every=3"]
    cfg = load([DEBUG_YAML, TOY_YAML], runs)
    assert cfg.objective.toy == toy.ToyConfig()
    s = train(cfg)
    assert s["status"] == "completed" and s["objective"] == "toy"
    mdlm = train(load([DEBUG_YAML], runs))
    losses = [
        [r["loss"] for r in RunDir(Path(c.train.runs_dir) / run_name(c)).read_metrics() if "loss" in r]
        for c in (cfg, load([DEBUG_YAML], runs))
    ]
    assert len(losses[0]) == 3 and losses[0] == losses[1]  # the same model, data and noise
    assert mdlm["status"] == "completed"


def test_toy_options_change_its_loss_exactly(toy):
    import torch

    from mdm.diffusion import build_objective
    from mdm.vocab import Vocab

    vocab = Vocab(size=20, mask_id=16)
    x = torch.randint(0, 16, (4, 12), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.2, 0.4, 0.6, 0.8])

    def loss(*over):
        cfg = load([DEBUG_YAML, TOY_YAML], list(over))
        obj = build_objective(cfg, vocab)
        torch.manual_seed(0)
        model = obj.build_model(cfg, vocab)
        return obj.sequence_loss(model, {"input_ids": x}, t, torch.Generator().manual_seed(3))

    base = loss()
    assert torch.equal(loss("objective.toy.scale=2.0"), 2 * base)
    assert torch.equal(base, (1.0 / t) * loss("objective.toy.weighting=flat"))  # log-linear: elbo weight 1/t


def test_toy_option_is_validated_and_its_section_names_only_its_runs(toy):
    with pytest.raises(ConfigError) as e:
        load([DEBUG_YAML, TOY_YAML], ["objective.toy.weighting=cosine"])
    assert str(e.value) == "objective.toy.weighting='cosine' is not valid for toy; choose one of: elbo, flat"
    with pytest.raises(ConfigError, match="objective.toy.temperature"):
        load([DEBUG_YAML, TOY_YAML], ["objective.toy.temperature=2"])
    assert options.section_owners()["toy"] == "toy"
    toy_name = run_name(load([DEBUG_YAML, TOY_YAML]))
    assert toy_name.startswith("toy-synthetic-") and toy_name != run_name(
        load([DEBUG_YAML, TOY_YAML], ["objective.toy.scale=2.0"])
    )
    # the other objectives' runs keep their names, whatever the toy's options
    assert run_name(load([DEBUG_YAML], ["objective.toy.scale=2.0"])) == run_name(load([DEBUG_YAML]))
    assert _check_frozen_names() == 84 + 12 + 48
