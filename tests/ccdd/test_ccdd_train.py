"""CCDD with a real frozen encoder (a tiny MDLM trained in the session): training, sampling, bad input."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from mdm.ccdd_encoder import load_statistics
from mdm.data.datamodule import ensure_prepared
from mdm.data.meta import load_meta
from mdm.diffusion.encoders import EncoderError
from mdm.loading import build_objective, load_run
from mdm.rundir import RunDir
from mdm.sampling.base import get_sampler
from mdm.train import train
from mdm.vocab import Vocab

from .conftest import REPO, tiny_cfg

D = 8


def _ccdd_cfg(root, encoder_run, *overrides):
    return tiny_cfg(
        root,
        "objective.name=ccdd",
        f"objective.ccdd.encoder_run={encoder_run}",
        f"objective.ccdd.d_cont={D}",
        "objective.ccdd.stats_batches=4",
        *overrides,
    )


def _objective(cfg):
    # the data's vocabulary only: prepare_run also counts FLOPs, which loads the encoder (and fails early)
    vocab = Vocab.from_meta(load_meta(ensure_prepared(cfg.data)))
    return build_objective(cfg, vocab), vocab


def test_continuous_term_decreases_on_synthetic_data(ccdd_root, encoder_run):
    """30 Adam steps on the synthetic data: the held-out continuous MSE (fixed noise) falls well below its start.

    Target z0 (x0): at unmasked positions it is a lookup of the token, which a tiny model learns in a few
    dozen steps (about 1.0 -> 0.6 here); the starting value is the variance of the standardised z0.
    """
    from mdm.data.datamodule import build_loader

    cfg = _ccdd_cfg(ccdd_root, encoder_run, "objective.ccdd.target=x0")
    obj, vocab = _objective(cfg)
    torch.manual_seed(0)
    model = obj.build_model(cfg, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    held_out = next(iter(build_loader(cfg.data, "validation", 32, 16, 0, train=False, progress=False)))

    def held_out_mse() -> float:
        with torch.no_grad():
            t = obj.sample_times(16, "cpu", generator=torch.Generator().manual_seed(9))
            _, mse, n = obj.terms(model, held_out, t, torch.Generator().manual_seed(9))
        return float(mse.sum() / n)  # per token, mean over the d_c dimensions

    before = held_out_mse()
    loader = iter(build_loader(cfg.data, "train", 32, 8, 0, train=True, progress=False))
    for _ in range(30):
        out = obj.loss(model, next(loader))
        opt.zero_grad()
        (out.sum / out.count).backward()
        opt.step()
    after = held_out_mse()
    assert before > 0.5  # the standardised target has unit variance per dimension
    assert after < 0.8 * before, (before, after)


def test_trains_and_samples_end_to_end(ccdd_root, encoder_run):
    cfg = _ccdd_cfg(
        ccdd_root, encoder_run, "train.max_steps=6", "train.val_every=6", "train.run_name=ccdd-e2e"
    )
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["objective"] == "ccdd"
    assert torch.isfinite(torch.tensor(summary["val_loss"]))
    stats_files = list((encoder_run / "ccdd_stats").glob("*.pt"))
    assert stats_files, "statistics are stored beside the encoder run"
    meta = load_statistics(stats_files[0])["meta"]
    assert meta["d_cont"] == D and meta["encoder"] == "embedding" and meta["tokens"] == 4 * 8 * 32

    run = load_run(RunDir.for_config(cfg).path)
    assert type(run.model).__name__ == "CoevolutionNet" and run.model.d_cont == D
    res = get_sampler("ccdd")(run.objective, run.model, (4, 32), 8, torch.Generator().manual_seed(0))
    assert res.tokens.shape == (4, 32) and res.tokens.min() >= 0 and res.tokens.max() < run.vocab.mask_id
    assert res.nfe == 8 and res.extra["z"].shape == (4, 32, D)
    guided = get_sampler("ccdd")(
        run.objective, run.model, (4, 32), 8, torch.Generator().manual_seed(0), guidance_scale=1.5
    )
    assert guided.nfe == 16 and guided.tokens.max() < run.vocab.mask_id


@pytest.mark.slow  # a subprocess: ~10 s of imports
@pytest.mark.skipif(
    importlib.util.find_spec("mdm.commands.sample") is None, reason="`mdm sample` not written yet"
)
def test_mdm_sample_cli(ccdd_root, encoder_run, tmp_path):
    cfg = _ccdd_cfg(
        ccdd_root, encoder_run, "train.max_steps=6", "train.val_every=6", "train.run_name=ccdd-e2e"
    )
    train(cfg)  # reuses the completed run of the test above (or trains it)
    run_dir = RunDir.for_config(cfg).path
    env = {"MDM_DATA_DIR": str(ccdd_root / "cache"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdm",
            "sample",
            str(run_dir),
            "--sampler",
            "ccdd",
            "--steps",
            "4",
            "--n",
            "2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]


# --- bad input --------------------------------------------------------------------------------------------------
def test_encoder_with_another_vocabulary(ccdd_root, encoder_run):
    cfg = _ccdd_cfg(ccdd_root, encoder_run, "data.synthetic.vocab=12")
    obj, _ = _objective(cfg)
    with pytest.raises(EncoderError, match="vocabulary"):
        obj.encoder()


def test_encoder_width_and_layer(ccdd_root, encoder_run):
    obj, _ = _objective(_ccdd_cfg(ccdd_root, encoder_run, "objective.ccdd.d_cont=65"))
    with pytest.raises(EncoderError, match="d_cont=65 exceeds the width 64"):
        obj.encoder()
    obj, _ = _objective(
        _ccdd_cfg(ccdd_root, encoder_run, "objective.ccdd.encoder=hidden", "objective.ccdd.encoder_layer=5")
    )
    with pytest.raises(EncoderError, match="encoder_layer=5"):
        obj.encoder()
    obj, _ = _objective(_ccdd_cfg(ccdd_root, encoder_run, "objective.ccdd.encoder_input=masked"))
    with pytest.raises(EncoderError, match="encoder=hidden only"):
        obj.encoder()


def test_missing_encoder_run_and_statistics(ccdd_root, encoder_run, tmp_path):
    obj, _ = _objective(_ccdd_cfg(ccdd_root, tmp_path / "nope"))
    with pytest.raises(EncoderError, match="encoder_run=.*nope"):
        obj.encoder()
    missing = tmp_path / "stats.pt"
    obj, _ = _objective(_ccdd_cfg(ccdd_root, encoder_run, f"objective.ccdd.stats_file={missing}"))
    with pytest.raises(FileNotFoundError, match="stats_file=.*stats.pt.*does not exist"):
        obj.encoder()
    obj, _ = _objective(
        _ccdd_cfg(
            ccdd_root,
            encoder_run,
            "objective.ccdd.compute_stats=false",
            "objective.ccdd.projection=truncate",
            "objective.ccdd.d_cont=3",
        )
    )
    with pytest.raises(FileNotFoundError, match="compute_stats=false"):
        obj.encoder()


def test_statistics_of_another_encoder_are_rejected(ccdd_root, encoder_run):
    obj, _ = _objective(
        _ccdd_cfg(ccdd_root, encoder_run, "objective.ccdd.projection=truncate", "objective.ccdd.d_cont=4")
    )
    obj.encoder()  # computes and stores truncate statistics
    path = next(p for p in (encoder_run / "ccdd_stats").glob("embedding-truncate4-*.pt"))
    obj, _ = _objective(
        _ccdd_cfg(ccdd_root, encoder_run, "objective.ccdd.d_cont=4", f"objective.ccdd.stats_file={path}")
    )
    with pytest.raises(EncoderError, match="computed for another encoder.*projection"):
        obj.encoder()


def test_hidden_encoder_on_masked_input(ccdd_root, encoder_run):
    """Hidden states of the trained run at layer 1, computed on x_t: z0 ignores what x_t masks."""
    cfg = _ccdd_cfg(
        ccdd_root,
        encoder_run,
        "objective.ccdd.encoder=hidden",
        "objective.ccdd.encoder_layer=1",
        "objective.ccdd.encoder_input=masked",
    )
    obj, vocab = _objective(cfg)
    enc = obj.encoder()
    assert enc.spec.kind == "hidden" and enc.spec.layer == 1 and not enc.spec.leaks_masked_tokens
    x = torch.randint(0, 16, (2, 32), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[:, 3] = (x[:, 3] + 1) % 16
    x_t = x.clone()
    x_t[:, 3] = vocab.mask_id
    t = torch.full((2,), 0.5)
    z = obj.encode(x, x_t, t)
    assert z.shape == (2, 32, D) and torch.equal(z, obj.encode(x2, x_t, t))
    model = obj.build_model(cfg, vocab)
    out = obj.loss(model, {"input_ids": x})
    assert torch.isfinite(out.sum) and out.metrics["loss_cont_mse"] > 0
