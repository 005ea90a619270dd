"""CCDD's frozen encoder from its trained run and its statistics file: the run and file access that the
maths (mdm/diffusion/ccdd.py, mdm/diffusion/encoders.py) leaves out.

The build step (:func:`mdm.loading.build_objective`) hands a CCDD objective an :class:`EncoderSource`
(``Objective.frozen_parts``); the objective asks it on first use:

* ``source(objective, statistics=False)``: the encoder run (``objective.ccdd.encoder_run``) loaded and
  checked (vocabulary, width, layer, context, direction), without statistics: what counting FLOPs needs;
* ``source(objective)``: the same encoder with its statistics, read from ``objective.ccdd.stats_file`` or
  ``<encoder run>/ccdd_stats/<descriptor>.pt``; a missing default file is fitted on the first
  ``stats_batches`` training batches (in order) and written there atomically when ``compute_stats``
  allows (an explicit ``stats_file`` is never written).

Statistics files hold tensors and metadata saved with ``torch.save`` and read with ``weights_only=True``.
"""

from __future__ import annotations

import io
import itertools
import sys
from pathlib import Path
from typing import Any

import torch

from mdm.diffusion.encoders import (
    EncoderError,
    EncoderSpec,
    FrozenEncoder,
    fit_statistics,
    frozen_encoder,
)
from mdm.io import atomic_write_bytes


class EncoderSource:
    """What a CCDD objective is handed: ``source(objective, statistics=True) -> FrozenEncoder``.

    ``load_run(path, device)`` loads the encoder run (:func:`mdm.loading.load_run`). The encoder is loaded
    once per source; its statistics are set on that same object when first asked for.
    """

    def __init__(self, load_run):
        self.load_run = load_run
        self._encoder: FrozenEncoder | None = None
        self._run_dir: Path | None = None
        self._with_statistics = False

    def __call__(self, objective, statistics: bool = True) -> FrozenEncoder:
        if self._encoder is None:
            self._encoder, self._run_dir = bare_encoder(objective, self.load_run)
        if statistics and not self._with_statistics:
            path = statistics_path(objective, self._encoder, self._run_dir)
            self._encoder.set_statistics(load_statistics(path), str(path))
            self._with_statistics = True
        return self._encoder


def bare_encoder(objective, load_run) -> tuple[FrozenEncoder, Path | None]:
    """(the encoder of ``objective.ccdd.encoder_run`` without statistics, its run directory or None)."""
    from mdm.data.datamodule import data_key

    c, cfg = objective.ccfg, objective.cfg
    try:
        run = load_run(c.encoder_run, "cpu")
    except FileNotFoundError as e:
        raise EncoderError(f"objective.ccdd.encoder_run={c.encoder_run!r}: {e}") from e
    enc = frozen_encoder(
        run,
        c.encoder_run,
        c.encoder,
        c.encoder_layer,
        c.encoder_input,
        c.projection,
        c.d_cont,
        objective.vocab,
        cfg.model.seq_len,
        data_key(cfg.data),
    )
    return enc, run.run_dir


def default_stats_path(spec: EncoderSpec, run_dir: Path | None) -> Path:
    """``<encoder run>/ccdd_stats/<descriptor>`` (beside the checkpoint when there is no run dir)."""
    base = run_dir if run_dir is not None else Path(spec.checkpoint).parent
    return base / "ccdd_stats" / spec.descriptor()


def statistics_path(objective, enc: FrozenEncoder, run_dir: Path | None) -> Path:
    """The statistics file of ``enc``, computed and written first when it is missing and allowed."""
    c = objective.ccfg
    path = default_stats_path(enc.spec, run_dir) if c.stats_file is None else Path(c.stats_file)
    if path.is_file():
        return path
    if c.stats_file is not None:
        raise FileNotFoundError(
            f"objective.ccdd.stats_file={c.stats_file!r} does not exist; unset it to compute the statistics "
            f"beside the encoder run (objective.ccdd.compute_stats=true), or write them with "
            f"mdm.ccdd_encoder.compute_statistics"
        )
    if not c.compute_stats:
        raise FileNotFoundError(
            f"CCDD encoder statistics {path} do not exist and objective.ccdd.compute_stats=false"
        )
    compute_statistics(objective, enc, path)
    return path


def compute_statistics(objective, enc: FrozenEncoder, path: str | Path) -> None:
    """Fit mean/projection on the first ``stats_batches`` training batches (in order) and store them."""
    from mdm.data.datamodule import build_loader

    cfg, c = objective.cfg, objective.ccfg
    loader = build_loader(
        cfg.data, "train", cfg.model.seq_len, cfg.eval.batch_size, seed=0, train=False, progress=False
    )
    gen = torch.Generator().manual_seed(0)
    batches = itertools.islice(loader, c.stats_batches)
    stats = fit_statistics(objective.statistics_features(enc, batches, gen), c.projection, c.d_cont)
    save_statistics(
        path, stats, enc.spec, {"stats_batches": c.stats_batches, "batch_size": cfg.eval.batch_size}
    )
    print(f"[mdm] ccdd: encoder statistics from {int(stats['tokens'])} tokens -> {path}", file=sys.stderr)
    if int(stats["rank"]) < c.d_cont:
        print(
            f"[mdm] ccdd: warning: the features have rank {int(stats['rank'])} < objective.ccdd.d_cont={c.d_cont} "
            f"on these tokens; the other {c.d_cont - int(stats['rank'])} dimensions of z0 are zero",
            file=sys.stderr,
        )


def save_statistics(
    path: str | Path, stats: dict[str, torch.Tensor], spec: EncoderSpec, extra: dict | None = None
) -> None:
    meta = {
        **spec.identity(),
        "encoder_checkpoint": spec.checkpoint,
        "tokens": int(stats["tokens"]),
        "rank": int(stats["rank"]),
        **(extra or {}),
    }
    buf = io.BytesIO()
    torch.save(
        {"mean": stats["mean"], "proj": stats["proj"], "spectrum": stats["spectrum"], "meta": meta}, buf
    )
    atomic_write_bytes(path, buf.getvalue())


def load_statistics(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise EncoderError(f"CCDD encoder statistics file {p} does not exist")
    try:
        stats = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EncoderError(f"CCDD encoder statistics file {p} is unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(stats, dict) or not {"mean", "proj", "meta"} <= set(stats):
        raise EncoderError(f"CCDD encoder statistics file {p} lacks mean/proj/meta")
    return stats
