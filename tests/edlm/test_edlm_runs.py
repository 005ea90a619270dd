"""EDLM with real runs: NCE training end to end on CPU, the AR energy from an AR run, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from mdm.config import ConfigError, load
from mdm.diffusion.edlm import ArEnergy, NceEnergy
from mdm.eval.edlm import edlm_bound, edlm_bound_terms
from mdm.loading import build_objective, load_energy, load_run
from mdm.rundir import RunDir
from mdm.sampling.base import get_sampler
from mdm.sampling.importance import edlm_generate
from tests.edlm.conftest import DEBUG_YAML, REPO, synthetic_vocab

NCE_YAML = REPO / "configs" / "edlm_nce.yaml"
AR_YAML = REPO / "configs" / "edlm_ar.yaml"


def _nce_cfg(base, *extra):
    return load([DEBUG_YAML, NCE_YAML], [f"objective.edlm.base_run={base}", *extra])


def test_nce_end_to_end(tmp_path):
    """Train a tiny MDLM for a few steps, train the NCE energy on it, sample with `edlm`, estimate the bound."""
    from mdm.train import train

    common = [
        f"train.runs_dir={tmp_path / 'runs'}",
        "train.val_every=100",
        "train.val_batches=1",
        "train.max_steps=2",
    ]
    base_cfg = load([DEBUG_YAML], common)
    assert train(base_cfg)["status"] == "completed"
    base_dir = RunDir.for_config(base_cfg).path

    cfg = _nce_cfg(base_dir, *common)
    vocab = load_run(base_dir).vocab
    fresh = build_objective(cfg, vocab)
    net = fresh.build_model(cfg, vocab)
    for (n, p), (n2, q) in zip(net.backbone.named_parameters(), fresh.base_model.named_parameters()):
        assert n == n2 and torch.equal(p, q)  # initialised from the base backbone (EMA weights)
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["objective"] == "edlm_nce"
    rows = [r for r in RunDir.for_config(cfg).read_metrics() if "loss" in r]
    L = cfg.model.seq_len
    assert rows[0]["loss"] == pytest.approx(2 * math.log(2) / L, rel=1e-5)  # E = 0 at init (zero head)
    assert all(math.isfinite(r["loss"]) for r in rows) and math.isfinite(summary["val_loss"])

    run = load_run(RunDir.for_config(cfg).path)
    g = torch.Generator().manual_seed(0)
    res = get_sampler("edlm")(run.objective, run.model, (3, L), 6, g, num_candidates=4, window=1.0)
    assert res.tokens.shape == (3, L) and int(res.tokens.max()) < vocab.mask_id and int(res.tokens.min()) >= 0
    assert res.extra["energy"] == "nce" and res.extra["denoiser_calls"] == 6 and res.nfe == 12

    x = res.tokens
    t = torch.tensor([0.9, 0.5, 0.1])
    nll = edlm_bound(
        run.objective,
        run.model,
        {"input_ids": x},
        t,
        torch.Generator().manual_seed(1),
        steps=4,
        num_samples=4,
        window=1.0,
    )
    assert nll.shape == (3,) and torch.isfinite(nll).all() and (nll >= 0).all()
    from mdm.eval.bound import estimate_bound  # `mdm eval`'s estimator dispatches edlm_* runs to edlm_bound

    res = estimate_bound(run.objective, run.model, x, K=2, seed=0, batch_size=6)
    assert res.nats_k.shape == (3, 2) and (res.tokens == L).all() and res.summary()["nats_per_token"] > 0
    energy = load_energy(RunDir.for_config(cfg).path)  # the same energy from the run dir alone
    assert isinstance(energy, NceEnergy) and energy.base_objective.registry_name == "mdlm"

    from mdm.cli import main  # `mdm sample` on an edlm_nce run uses the edlm sampler by default

    out = tmp_path / "samples.jsonl"
    assert (
        main(["sample", str(RunDir.for_config(cfg).path), "--steps", "4", "--n", "2", "--out", str(out)]) == 0
    )
    assert len(out.read_text().splitlines()) == 2
    assert '"sampler": "edlm"' in out.with_name("samples_summary.json").read_text()


def test_ar_energy_from_runs(fake_run):
    """The AR energy composes a base run and an AR run (loaded from disk) and samples/evaluates through them;
    via a config (configs/edlm_ar.yaml) too. E_AR = -log p_AR + log mu, so exp(-E) = p_AR / mu."""
    base = fake_run("base")
    ar = fake_run("ar", "objective.name=ar", seed=1)
    energy = load_energy(base, ar_run=ar)
    assert isinstance(energy, ArEnergy)
    cfg = load([DEBUG_YAML, AR_YAML], [f"objective.edlm.base_run={base}", f"objective.edlm.ar_run={ar}"])
    assert isinstance(load_energy(cfg), ArEnergy)
    L = 32
    r = edlm_generate(
        energy, (2, L), 4, num_candidates=3, window=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert r.tokens.shape == (2, L) and r.extra["energy"] == "ar" and (r.tokens < energy.mask_id).all()
    x0 = r.tokens
    z = x0.clone()
    z[:, ::2] = energy.mask_id
    t = torch.full((2,), 0.5)
    logp = energy.denoiser_log_probs(z, t)
    log_mu = logp.gather(-1, x0[..., None]).squeeze(-1).double().sum(-1)
    e = energy.energy(x0, z, t, log_mu)
    assert torch.allclose(-e, energy.log_p_ar(x0) - log_mu)
    out = edlm_bound_terms(energy, {"input_ids": x0}, 4, 1.0, 3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.nll).all()


def test_bad_base_runs(fake_run):
    ar = fake_run("ar", "objective.name=ar")
    with pytest.raises(ConfigError, match="trained with objective 'ar'.*masked diffusion base run"):
        build_objective(_nce_cfg(ar), synthetic_vocab(16))
    small = fake_run("mdlm8", "data.synthetic.vocab=8")
    with pytest.raises(ConfigError, match=r"different tokenizers/vocabularies.*vocab.mask_id: 17 vs 9"):
        build_objective(_nce_cfg(small), synthetic_vocab(16))
    base = fake_run("base")
    with pytest.raises(ConfigError, match=r"model\.\* must match.*model.depth: 3 vs 2"):
        build_objective(_nce_cfg(base, "model.depth=3"), synthetic_vocab(16))
    with pytest.raises(ConfigError, match="schedule"):
        build_objective(_nce_cfg(base, "schedule.eps=0.01"), synthetic_vocab(16))
    with pytest.raises(ConfigError, match="objective.edlm.base_run is required"):
        build_objective(load([DEBUG_YAML, NCE_YAML]), synthetic_vocab(16))
    with pytest.raises(ConfigError, match="num_candidates"):
        build_objective(_nce_cfg(base, "objective.edlm.num_candidates=0"), synthetic_vocab(16))
    with pytest.raises(FileNotFoundError):
        build_objective(_nce_cfg(base.parent / "nope"), synthetic_vocab(16))


def test_bad_ar_runs(fake_run):
    base = fake_run("base")
    other_tok = fake_run("ar8", "objective.name=ar", "data.synthetic.vocab=8")
    with pytest.raises(
        ConfigError, match=r"AR run .* use different tokenizers/vocabularies.*data.synthetic.vocab: 8 vs 16"
    ):
        load_energy(base, ar_run=other_tok)
    not_ar = fake_run("mdlm2", seed=3)
    with pytest.raises(ConfigError, match="trained with objective 'mdlm'; the AR energy needs an 'ar' run"):
        load_energy(base, ar_run=not_ar)
    short = fake_run("ar16", "objective.name=ar", "model.seq_len=16")
    with pytest.raises(ConfigError, match="context model.seq_len=16"):
        load_energy(base, ar_run=short)
    with pytest.raises(ConfigError, match="needs an energy"):
        load_energy(base)  # a base run alone has no energy
    ar = fake_run("ar", "objective.name=ar")
    with pytest.raises(ConfigError, match="EDLM needs an edlm_nce run"):
        load_energy(ar, ar_run=ar)
    with pytest.raises(ConfigError, match="nothing to train"):
        build_objective(load([DEBUG_YAML, AR_YAML]), synthetic_vocab(16))
    with pytest.raises(ConfigError, match="needs objective.edlm.base_run and objective.edlm.ar_run"):
        load_energy(load([DEBUG_YAML, AR_YAML], [f"objective.edlm.base_run={base}"]))


def test_mdm_sample_cli(fake_run, tmp_path, capsys):
    """`mdm sample BASE --sampler edlm --ar-run AR` writes samples; a run of another objective is refused."""
    import json

    from mdm.cli import main

    base, ar = fake_run("base"), fake_run("ar", "objective.name=ar", seed=1)
    out = tmp_path / "s.jsonl"
    argv = ["sample", str(base), "--sampler", "edlm", "--ar-run", str(ar), "--steps", "4", "--n", "3"]
    assert main([*argv, "--batch-size", "2", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sampler"] == "edlm" and summary["n"] == 3 and len(out.read_text().splitlines()) == 3
    assert main(["sample", str(base), "--sampler", "edlm", "--steps", "2", "--out", str(out)]) == 2
    assert "needs an energy" in capsys.readouterr().err
    assert main(["sample", str(ar), "--sampler", "edlm", "--steps", "2", "--out", str(out)]) == 2
    assert "does not fit objective 'ar'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "over,message",
    [
        ("num_candidates=0", r"objective\.edlm\.num_candidates must be >= 1, got 0"),
        ("window=1.5", r"objective\.edlm\.window must be in \[0, 1\], got 1\.5"),
        ("nce_negatives_per_positive=0", r"objective\.edlm\.nce_negatives_per_positive must be >= 1, got 0"),
        ("bound_steps=0", r"objective\.edlm\.bound_samples and bound_steps must be >= 1, got 16, 0"),
    ],
)
def test_out_of_range_options_stop_the_config_load(over, message):
    """EdlmConfig.invalid holds the ranges: an edlm_nce config stops at load; edlm_ar (which reads the same
    section, and is not built) and the sampler check them with check_edlm_config, same message."""
    from mdm.diffusion.edlm import check_edlm_config

    with pytest.raises(ConfigError, match=message):
        load([DEBUG_YAML, NCE_YAML], [f"objective.edlm.{over}"])
    ar = load([DEBUG_YAML, REPO / "configs" / "edlm_ar.yaml"], [f"objective.edlm.{over}"])
    with pytest.raises(ConfigError, match=message):
        check_edlm_config(ar.objective.edlm)
