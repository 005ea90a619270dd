"""RADD and SEDD on the real backbone: configs, finite losses and gradients at the ends of the time interval,
bad input, and (slow) a few training steps from each shipped config with ``mdm train``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdm.config import ConfigError, load
from mdm.diffusion import build_objective
from mdm.vocab import Vocab

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "radd": ["objective.loss=t_dce"],
    "radd_lambda": ["objective.name=radd", "objective.loss=lambda_dce"],
    "radd_ao": ["objective.name=radd", "objective.loss=any_order"],
    "sedd_absorb": [],
    "sedd_absorb_geometric": ["schedule.name=geometric"],
    "sedd_uniform": [],
    "sedd_uniform_loglinear": ["schedule.name=loglinear"],
    "mdlm": [],
}
TINY = [
    "model.depth=1",
    "model.aspect_ratio=32",
    "model.head_dim=32",
    "model.seq_len=16",
    "model.cond_dim=16",
]
VOCAB = Vocab(size=64, mask_id=20)


def _cfg(case: str):
    yaml = {"radd_lambda": "radd", "radd_ao": "radd"}.get(case, case)
    yaml = yaml.replace("_geometric", "").replace("_loglinear", "")
    return load([REPO / "configs" / f"{yaml}.yaml"], TINY + CONFIGS[case])


@pytest.mark.parametrize("case", list(CONFIGS))
def test_loss_and_gradients_are_finite_at_both_ends(case):
    cfg = _cfg(case)
    obj = build_objective(cfg, VOCAB)
    torch.manual_seed(0)
    model = obj.build_model(cfg, VOCAB)
    assert model.time_conditioning == obj.time_conditioned
    x = torch.randint(0, VOCAB.mask_id, (4, 16))
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x, dtype=torch.bool)}
    batch["attention_mask"][:, -3:] = False  # some padding
    for t_end in (cfg.objective.t_min, 1.0):
        t = torch.full((4,), t_end)
        out = obj.loss(model, batch, t)
        assert torch.isfinite(out.sum) and out.count == 4 * 13
        model.zero_grad()
        out.sum.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), (
            case,
            t_end,
        )


def test_time_conditioning_defaults():
    assert not build_objective(_cfg("radd"), VOCAB).time_conditioned
    assert build_objective(_cfg("sedd_absorb"), VOCAB).time_conditioned
    assert build_objective(_cfg("sedd_uniform"), VOCAB).time_conditioned
    with pytest.raises(ValueError, match="radd.*no time conditioning"):
        build_objective(load([REPO / "configs" / "radd.yaml"], ["model.time_conditioning=true"]), VOCAB)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (
            ["objective.name=radd", "objective.loss=dce"],
            r"objective.loss='dce'.*t_dce, lambda_dce, any_order",
        ),
        (["objective.name=radd", "objective.graph=uniform"], r"objective.graph='uniform'.*absorb"),
        (["objective.name=sedd", "objective.graph=ring"], r"objective.graph='ring'.*absorb, uniform"),
        (["objective.name=sedd", "objective.loss=t_dce"], r"objective.loss='t_dce'.*sedd.*default, dse"),
    ],
)
def test_bad_names_fail_with_the_valid_choices(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_objective(load([], overrides), VOCAB)


def test_sedd_prior_term_is_the_kl_to_the_prior():
    """Absorb: alpha_1 log N per position; uniform: KL of (beta + u, u, ...) to uniform; 0 at eps = 0."""
    import math

    x = torch.randint(0, 20, (2, 5))
    absorb = build_objective(load([], ["objective.name=sedd", "schedule.eps=1e-3"]), VOCAB)
    torch.testing.assert_close(
        absorb.prior_term(x), torch.full((2,), 5 * 1e-3 * math.log(20), dtype=torch.float64)
    )
    uni = build_objective(
        load([], ["objective.name=sedd", "objective.graph=uniform", "schedule.name=geometric"]), VOCAB
    )
    beta = math.exp(-20.0)
    u = (1 - beta) / 20
    kl = (beta + u) * math.log((beta + u) * 20) + 19 * u * math.log(u * 20)
    torch.testing.assert_close(uni.prior_term(x), torch.full((2,), 5 * kl, dtype=torch.float64))


def test_left_to_right_nll_matches_a_direct_loop_on_the_backbone():
    cfg = _cfg("radd")
    obj = build_objective(cfg, VOCAB)
    torch.manual_seed(1)
    model = obj.build_model(cfg, VOCAB).eval()
    x = torch.randint(0, 20, (3, 16))
    fast = obj.left_to_right_nll(model, x, max_rows=10)
    slow = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for l in range(16):
            z = x.clone()
            z[:, l:] = VOCAB.mask_id
            lp = obj.log_probs(model, z)[:, l]
            slow -= lp.gather(-1, x[:, l : l + 1])[:, 0].double()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["radd", "sedd_absorb", "sedd_uniform"])
def test_each_config_trains_with_mdm_train(config, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mdm",
        "train",
        f"configs/{config}.yaml",
        "configs/debug.yaml",
        "train.max_steps=3",
        "train.val_every=3",
        f"train.runs_dir={tmp_path}",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = next(tmp_path.glob("*/summary.json")).read_text()
    assert '"status": "completed"' in summary
