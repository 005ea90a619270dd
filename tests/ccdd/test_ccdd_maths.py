"""CCDD maths without training: reduction to MDLM, the Gaussian process, masks, leakage, statistics, sampler."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import mdm.sampling  # noqa: F401  (registers every sampler)
from mdm.config import ConfigError
from mdm.diffusion import build_objective
from mdm.diffusion.encoders import (
    EncoderError,
    EncoderSpec,
    FrozenEncoder,
    check_statistics,
    fit_statistics,
)
from mdm.flops import count
from mdm.models.backbone import Transformer
from mdm.models.ccdd import resolve_layer
from mdm.sampling.base import SAMPLERS, get_sampler
from mdm.sampling.ccdd import _unmask_step
from mdm.vocab import Vocab

from .conftest import tiny_cfg

VOCAB = Vocab(size=64, mask_id=17, eos_id=16)
B, L, D_CONT = 6, 32, 8


def _cfg(tmp_path, *overrides):
    return tiny_cfg(tmp_path, "objective.name=ccdd", f"objective.ccdd.d_cont={D_CONT}", *overrides)


def _batch(seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB.mask_id, (B, L), generator=g)
    batch = {"input_ids": x}
    if pad:
        valid = torch.ones(B, L, dtype=torch.bool)
        valid[0, 20:] = False
        valid[3, 5:] = False
        batch["attention_mask"] = valid
    return batch


def _encoder(cfg, kind="embedding", inp="clean", layer=-1, seed=0) -> FrozenEncoder:
    """A random (untrained) bidirectional backbone as the frozen encoder; z0 = first D_CONT coordinates."""
    torch.manual_seed(seed)
    net = Transformer(cfg.model, VOCAB.size)
    W = net.dims.d_model
    k = resolve_layer(layer, net.dims.depth) if kind == "hidden" else 0
    spec = EncoderSpec(kind, k, inp, "truncate", D_CONT, W, VOCAB, "none", 0, "test")
    enc = FrozenEncoder(net, spec, lambda t: None)
    enc.set_statistics(
        {"mean": torch.zeros(W), "proj": torch.eye(W)[:, :D_CONT], "meta": spec.identity()}, "test"
    )
    return enc


def _objective(tmp_path, *overrides, encoder_kind="embedding", encoder_input="clean"):
    cfg = _cfg(tmp_path, *overrides)
    obj = build_objective(cfg, VOCAB)
    if obj.continuous:
        obj._encoder = _encoder(cfg, encoder_kind, encoder_input)
    return cfg, obj


# --- 1. exact reduction to MDLM ------------------------------------------------------------------------------
@pytest.mark.parametrize("pad", [False, True])
def test_continuous_off_equals_mdlm(tmp_path, pad):
    cfg, ccdd = _objective(tmp_path, "objective.ccdd.continuous=false")
    model = ccdd.build_model(cfg, VOCAB)
    mcfg = tiny_cfg(tmp_path, "objective.name=mdlm")
    mdlm = build_objective(mcfg, VOCAB)
    ref = mdlm.build_model(mcfg, VOCAB)
    ref.load_state_dict(model.backbone.state_dict())
    # the network is the backbone and nothing else: same parameters, same FLOP count
    assert set(model.state_dict()) == {f"backbone.{k}" for k in ref.state_dict()}
    assert count(model) == count(ref)
    batch = _batch(pad=pad)
    t = ccdd.sample_times(B, "cpu", generator=torch.Generator().manual_seed(1))
    a = ccdd.sequence_loss(model, batch, t, torch.Generator().manual_seed(2))
    b = mdlm.sequence_loss(ref, batch, t, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    torch.manual_seed(3)
    la = ccdd.loss(model, batch)
    torch.manual_seed(3)
    lb = mdlm.loss(ref, batch)
    assert torch.equal(la.sum, lb.sum) and torch.equal(la.count, lb.count)
    la.sum.backward()
    lb.sum.backward()
    for (n, p), (_, q) in zip(model.backbone.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), n


def test_fresh_network_discrete_term_equals_mdlm(tmp_path):
    """z_in starts at zero and masks are drawn first: at init the discrete term is MDLM's, bit for bit."""
    cfg, ccdd = _objective(tmp_path)
    model = ccdd.build_model(cfg, VOCAB)
    mcfg = tiny_cfg(tmp_path, "objective.name=mdlm")
    mdlm = build_objective(mcfg, VOCAB)
    batch = _batch()
    t = ccdd.sample_times(B, "cpu", generator=torch.Generator().manual_seed(1))
    disc, mse, n = ccdd.terms(model, batch, t, torch.Generator().manual_seed(5))
    ref = mdlm.sequence_loss(model.backbone, batch, t, torch.Generator().manual_seed(5))
    assert torch.equal(disc, ref)
    assert n == batch["attention_mask"].sum() and mse.shape == (B,) and (mse > 0).all()


# --- 2. the Gaussian process -----------------------------------------------------------------------------------
@pytest.mark.parametrize("process", ["vp", "flow"])
@pytest.mark.parametrize("target", ["eps", "x0", "velocity"])
def test_process_and_target_round_trip(tmp_path, process, target):
    _, obj = _objective(tmp_path, f"objective.ccdd.process={process}", f"objective.ccdd.target={target}")
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(5, 4, D_CONT, generator=g), torch.randn(5, 4, D_CONT, generator=g)
    s = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95])
    a, b = obj.coefficients(s)
    if process == "vp":
        torch.testing.assert_close(a**2 + b**2, torch.ones(5))
    else:
        torch.testing.assert_close(a + b, torch.ones(5))
    zs = obj.noise(z0, s, eps)
    torch.testing.assert_close(zs, a[:, None, None] * z0 + b[:, None, None] * eps)
    z0_hat, eps_hat = obj.predictions(obj.target(z0, eps, s), zs, s)  # the exact target inverts exactly
    torch.testing.assert_close(z0_hat, z0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=1e-4)
    # ends: s = 0 is clean, s = 1 is pure noise (a_1 = 0 exactly)
    ends = torch.tensor([0.0, 1.0])
    a, b = obj.coefficients(ends)
    assert a.tolist() == [1.0, 0.0] and b.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("process", ["vp", "flow"])
def test_velocity_is_the_time_derivative(tmp_path, process):
    """flow: v = dz/ds; vp: v = (2/pi) dz/ds (the angle parameterisation of Salimans & Ho)."""
    _, obj = _objective(tmp_path, f"objective.ccdd.process={process}", "objective.ccdd.target=velocity")
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 2, D_CONT, generator=g).double(), torch.randn(3, 2, D_CONT, generator=g).double()
    s = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64, requires_grad=True)
    a, b = obj.coefficients(s)
    # autograd through the (float32) coefficients at each s
    da = torch.autograd.grad(a.sum(), s, retain_graph=True)[0]
    db = torch.autograd.grad(b.sum(), s)[0]
    dz = da[:, None, None] * z0 + db[:, None, None] * eps
    v = obj.target(z0.float(), eps.float(), s.detach().float()).double()
    scale = 2 / math.pi if process == "vp" else 1.0
    torch.testing.assert_close(v, scale * dz, atol=1e-5, rtol=1e-5)


def test_time_links_and_drop(tmp_path):
    t = torch.linspace(0.01, 1.0, 4000)
    _, shared = _objective(tmp_path, "objective.ccdd.cont_drop=0.0")
    assert torch.equal(shared.continuous_times(t), t)
    _, power = _objective(
        tmp_path,
        "objective.ccdd.time_link=power",
        "objective.ccdd.time_power=2.0",
        "objective.ccdd.cont_drop=0.0",
    )
    torch.testing.assert_close(power.continuous_times(t), t**2)
    _, ind = _objective(tmp_path, "objective.ccdd.time_link=independent", "objective.ccdd.cont_drop=0.0")
    s = ind.continuous_times(t, torch.Generator().manual_seed(0))
    assert s.min() >= ind.ocfg.t_min and s.max() <= 1 and abs(torch.corrcoef(torch.stack([s, t]))[0, 1]) < 0.1
    _, drop = _objective(tmp_path, "objective.ccdd.cont_drop=0.25")
    s = drop.continuous_times(t, torch.Generator().manual_seed(0))
    dropped = (s == 1) & (t < 1)
    frac = dropped.float().sum() / (t < 1).sum()
    assert abs(frac - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 4000)  # 4 binomial standard errors
    assert torch.equal(s[~dropped], t[~dropped])


# --- 3. shapes, masks and the two terms ------------------------------------------------------------------------
class Oracle(nn.Module):
    """Knows the clean batch and the encoder: exact logits (all mass on x) and the exact continuous target."""

    def __init__(self, obj, batch):
        super().__init__()
        self.obj, self.x, self.valid = obj, batch["input_ids"], batch.get("attention_mask")
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen_levels = []

    def forward(self, x_t, sigma=None, z=None, level=None, key_mask=None):
        logits = torch.full((*x_t.shape, VOCAB.size), -30.0).scatter_(-1, self.x[..., None], 30.0)
        z0 = self.obj.encode(self.x, x_t, None, self.valid)
        a, b = self.obj.coefficients(level)
        eps = (z - a[:, None, None] * z0) / b[:, None, None]
        out = self.obj.target(z0, eps, level)
        if self.valid is not None:  # garbage at padding: must not count
            out = torch.where(self.valid[..., None], out, torch.full_like(out, 1e3))
        self.seen_levels.append(level)
        return logits, out


def test_oracle_has_zero_loss_and_padding_is_ignored(tmp_path):
    _, obj = _objective(tmp_path, "objective.ccdd.process=flow", "objective.ccdd.target=x0")
    batch = _batch()
    t = torch.linspace(0.1, 0.9, B)
    disc, mse, n = obj.terms(Oracle(obj, batch), batch, t, torch.Generator().manual_seed(0))
    assert disc.shape == (B,) and mse.shape == (B,)
    assert disc.abs().max() < 1e-6 * 30 and mse.abs().max() < 1e-8
    assert n == batch["attention_mask"].sum()


def test_loss_is_discrete_plus_lambda_mse(tmp_path):
    cfg, obj = _objective(tmp_path, "objective.ccdd.lambda_cont=0.5")
    model = obj.build_model(cfg, VOCAB)
    batch = _batch()
    torch.manual_seed(0)
    out = obj.loss(model, batch)
    torch.manual_seed(0)
    t = obj.sample_times(B, "cpu")
    disc, mse, n = obj.terms(model, batch, t)
    torch.testing.assert_close(out.sum, disc.sum() + 0.5 * mse.sum())
    assert out.count == batch["attention_mask"].sum() == out.metrics["cont_tokens"]
    torch.testing.assert_close(out.metrics["loss_discrete"], disc.sum())
    torch.testing.assert_close(out.metrics["loss_cont_mse"], mse.sum())
    # shapes of the two heads
    logits, cont = model(batch["input_ids"], None, z=torch.zeros(B, L, D_CONT), level=torch.ones(B))
    assert logits.shape == (B, L, VOCAB.size) and cont.shape == (B, L, D_CONT)


def test_bound_choices(tmp_path):
    """z_blind needs no encoder and ignores the data's z0; discrete does use it."""
    cfg, obj = _objective(tmp_path, "objective.ccdd.bound=z_blind")
    model = obj.build_model(cfg, VOCAB)
    torch.nn.init.normal_(model.z_in.weight)  # make z matter
    batch = _batch()
    t = torch.full((B,), 0.3)
    obj._encoder = None  # would raise if it were used
    obj.ccfg.encoder_run = None
    blind = obj.sequence_loss(model, batch, t, torch.Generator().manual_seed(0))
    assert blind.shape == (B,) and torch.isfinite(blind).all()
    obj.ccfg.bound = "discrete"
    with pytest.raises(EncoderError, match="encoder_run"):
        obj.sequence_loss(model, batch, t, torch.Generator().manual_seed(0))


def test_bad_choices_name_the_key(tmp_path):
    for key, value in [("process", "ve"), ("target", "score"), ("time_link", "lagged"), ("bound", "joint")]:
        with pytest.raises(ConfigError, match=f"objective.ccdd.{key}='{value}'"):
            _objective(tmp_path, f"objective.ccdd.{key}={value}")
    with pytest.raises(ConfigError, match="cont_drop"):
        _objective(tmp_path, "objective.ccdd.cont_drop=1.0")


@pytest.mark.parametrize(
    "over,message",
    [
        ("d_cont=0", r"objective\.ccdd\.d_cont must be positive, got 0"),
        ("lambda_cont=-1", r"objective\.ccdd\.lambda_cont must be >= 0, got -1"),
        ("cont_drop=1.0", r"objective\.ccdd\.cont_drop must be in \[0, 1\), got 1\.0"),
        ("cont_drop=-0.1", r"objective\.ccdd\.cont_drop must be in \[0, 1\), got -0\.1"),
        ("time_power=0", r"objective\.ccdd\.time_power must be positive, got 0"),
        ("stats_batches=0", r"objective\.ccdd\.stats_batches must be positive, got 0"),
    ],
)
def test_out_of_range_options_stop_the_config_load(tmp_path, over, message):
    """The ranges live with the options (CcddConfig.invalid): a bad value stops the load, before any
    objective is built, and building one from such a config refuses it the same way."""
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, f"objective.ccdd.{over}")
    cfg = _cfg(tmp_path, "objective.name=mdlm", f"objective.ccdd.{over}")  # another objective's: not checked
    cfg = dataclasses.replace(cfg, objective=dataclasses.replace(cfg.objective, name="ccdd"))
    with pytest.raises(ConfigError, match=message):
        build_objective(cfg, VOCAB)


# --- 4. leakage ---------------------------------------------------------------------------------------------------
def test_leakage_of_each_encoder(tmp_path):
    cfg = _cfg(tmp_path)
    x = _batch(pad=False)["input_ids"][:2]
    j = 7
    x2 = x.clone()
    x2[:, j] = (x[:, j] + 1) % VOCAB.mask_id  # change one token
    others = torch.arange(L) != j

    emb = _encoder(cfg, "embedding")
    dz = (emb(x) - emb(x2)).abs().amax(-1)  # (2, L)
    assert (dz[:, j] > 0).all() and (dz[:, others] == 0).all() and not emb.spec.leaks_masked_tokens

    clean = _encoder(cfg, "hidden", "clean", layer=-1)
    dz = (clean(x) - clean(x2)).abs().amax(-1)
    assert (dz[:, others] > 1e-4).all() and clean.spec.leaks_masked_tokens  # every position sees token j

    masked = _encoder(cfg, "hidden", "masked", layer=1)
    x_t = x.clone()
    x_t[:, j] = VOCAB.mask_id  # token j is masked: the two clean sequences share x_t
    t = torch.full((2,), 0.5)
    assert torch.equal(masked(x, x_t, t), masked(x2, x_t, t)) and not masked.spec.leaks_masked_tokens


# --- 5. statistics -------------------------------------------------------------------------------------------------
def _spec(projection, d, width):
    return EncoderSpec("embedding", 0, "clean", projection, d, width, VOCAB, "ck", 0, "data")


def test_statistics_standardise_exactly():
    g = torch.Generator().manual_seed(0)
    W, d = 12, 5
    mix = torch.randn(W, W, generator=g)
    f = (torch.randn(4, 50, W, generator=g) @ mix + 3.0).double()  # correlated, offset features
    valid = torch.rand(4, 50, generator=g) > 0.2
    batches = [(f[:2], valid[:2]), (f[2:], valid[2:])]
    flat = f[valid]  # (N, W): the tokens the statistics see
    for projection in ("pca", "truncate"):
        st = fit_statistics(batches, projection, d)
        z = (flat - st["mean"]) @ st["proj"]  # (N, d)
        torch.testing.assert_close(z.mean(0), torch.zeros(d, dtype=torch.float64), atol=1e-9, rtol=0)
        cov = (z.T @ z) / z.shape[0]
        if projection == "pca":
            torch.testing.assert_close(cov, torch.eye(d, dtype=torch.float64), atol=1e-8, rtol=0)
            assert (st["spectrum"][:-1] >= st["spectrum"][1:]).all()  # leading components first
        else:
            torch.testing.assert_close(cov.diagonal(), torch.ones(d, dtype=torch.float64), atol=1e-9, rtol=0)
            assert torch.count_nonzero(st["proj"][d:]) == 0  # only the first d coordinates
        assert int(st["tokens"]) == int(valid.sum())


def test_statistics_zero_degenerate_directions():
    """Features of rank 3 (4 distinct tokens) and d_c = 6: three live dimensions, three exactly zero."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(4, 10, generator=g).double()
    f = table[torch.randint(0, 4, (1, 400), generator=g)]
    st = fit_statistics([(f, None)], "pca", 6)
    assert int(st["rank"]) == 3 and torch.count_nonzero(st["proj"][:, 3:]) == 0
    z = (f.reshape(-1, 10) - st["mean"]) @ st["proj"]
    torch.testing.assert_close(z.var(0, unbiased=False)[:3], torch.ones(3, dtype=torch.float64))


def test_statistics_that_do_not_fit_are_rejected():
    spec = _spec("pca", 4, 16)
    good = {"mean": torch.zeros(16), "proj": torch.zeros(16, 4), "meta": spec.identity()}
    check_statistics(good, spec, "ok")
    with pytest.raises(EncoderError, match=r"width 16 and d_cont 4"):
        check_statistics({**good, "mean": torch.zeros(8), "proj": torch.zeros(8, 4)}, spec, "f.pt")
    other = _spec("truncate", 4, 16)
    with pytest.raises(EncoderError, match="another encoder.*projection"):
        check_statistics({**good, "meta": other.identity()}, spec, "f.pt")


# --- 6. the sampler ---------------------------------------------------------------------------------------------------
def test_unmask_step_probabilities(tmp_path):
    """P(stay masked) = (1 - alpha_s)/(1 - alpha_t); revealed tokens follow p_theta. Binomial tolerance."""
    cfg, obj = _objective(tmp_path, "objective.ccdd.continuous=false")
    n = 20000
    p = torch.tensor([0.7, 0.2, 0.1] + [0.0] * (VOCAB.mask_id - 3))
    logp = p.clamp_min(1e-45).log().expand(1, n, -1)
    x = torch.full((1, n), VOCAB.mask_id)
    t, s = torch.tensor(0.8), torch.tensor(0.5)
    y = _unmask_step(obj, x, logp, t, s, torch.Generator().manual_seed(0))[0]
    a_t, a_s = obj.schedule.alpha(t.double()), obj.schedule.alpha(s.double())
    stay = float((1 - a_s) / (1 - a_t))
    se = math.sqrt(stay * (1 - stay) / n)
    assert abs((y == VOCAB.mask_id).float().mean() - stay) < 4 * se
    revealed = y[y != VOCAB.mask_id]
    freq = torch.bincount(revealed, minlength=3)[:3].double() / revealed.numel()
    assert (freq - p[:3].double()).abs().max() < 4 * math.sqrt(0.25 / revealed.numel())
    assert revealed.max() < 3  # zero-probability tokens are never drawn


class FixedTarget(nn.Module):
    """Predicts a fixed z0 through the configured target: the ODE must land exactly on it."""

    def __init__(self, obj, z0):
        super().__init__()
        self.obj, self.z0 = obj, z0
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, sigma=None, z=None, level=None, key_mask=None):
        a, b = self.obj.coefficients(level)
        eps = (z - a[:, None, None] * self.z0) / b[:, None, None].clamp_min(1e-6)
        logits = torch.zeros(*x.shape, VOCAB.size)
        return logits, self.obj.target(self.z0, eps, level)


@pytest.mark.parametrize("process,target", [("flow", "velocity"), ("vp", "x0"), ("vp", "velocity")])
def test_sampler_shapes_nfe_and_ode_endpoint(tmp_path, process, target):
    cfg, obj = _objective(tmp_path, f"objective.ccdd.process={process}", f"objective.ccdd.target={target}")
    z0 = torch.randn(3, L, D_CONT, generator=torch.Generator().manual_seed(1))
    sampler = get_sampler("ccdd")
    res = sampler(obj, FixedTarget(obj, z0), (3, L), 10, torch.Generator().manual_seed(0))
    assert res.tokens.shape == (3, L) and res.tokens.max() < VOCAB.mask_id and res.nfe == 10
    torch.testing.assert_close(res.extra["z"], z0, atol=1e-4, rtol=1e-4)
    guided = sampler(
        obj, FixedTarget(obj, z0), (3, L), 10, torch.Generator().manual_seed(0), guidance_scale=2.0
    )
    assert guided.nfe == 20 and guided.extra["guidance_scale"] == 2.0
    # same generator, same draws
    again = sampler(obj, FixedTarget(obj, z0), (3, L), 10, torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, res.tokens)


def test_sampler_bad_input(tmp_path):
    cfg, obj = _objective(tmp_path, "objective.ccdd.cont_drop=0.0")
    model = obj.build_model(cfg, VOCAB)
    sampler = get_sampler("ccdd")
    with pytest.raises(ValueError, match="never trained"):
        sampler(obj, model, (2, L), 4, guidance_scale=1.0)
    with pytest.raises(ValueError, match="steps"):
        sampler(obj, model, (2, L), 0)
    acfg = tiny_cfg(tmp_path, "objective.name=ar")
    ar = build_objective(acfg, VOCAB)
    with pytest.raises(ValueError, match="MDLM-family"):
        sampler(ar, ar.build_model(acfg, VOCAB), (2, L), 4)


def test_token_only_samplers_use_the_z_blind_denoiser(tmp_path):
    cfg, obj = _objective(tmp_path)
    model = obj.build_model(cfg, VOCAB)
    torch.nn.init.normal_(model.z_in.weight)  # make z matter
    x = _batch(pad=False)["input_ids"]
    z = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.5, VOCAB.mask_id, x)
    t = torch.full((B,), 0.5)
    logp = obj.denoiser_log_probs(model, z, t, generator=torch.Generator().manual_seed(2))
    eps = torch.randn(B, L, D_CONT, generator=torch.Generator().manual_seed(2))
    ref = obj.clean_log_probs(model(z, None, z=eps, level=torch.ones(B))[0])
    masked = z == VOCAB.mask_id
    torch.testing.assert_close(logp[masked], ref[masked])
    assert (logp[~masked].argmax(-1) == z[~masked]).all()  # carry-over
    ancestral = get_sampler("ancestral") if "ancestral" in SAMPLERS else None
    if ancestral is not None:
        res = ancestral(obj, model, (2, L), 4, torch.Generator().manual_seed(0))
        assert res.tokens.shape == (2, L) and res.tokens.max() < VOCAB.mask_id
