"""The thin LightningModule: backbone + objective + EMA. No diffusion maths here.

One optimizer step per loader batch (the per-device batch); the batch is split into micro-batches
and every micro-batch's loss is its *sum* divided by the *global* token count of the step, so gradient
accumulation and data parallelism reproduce the big-batch gradient exactly (CONTRIBUTING.md, "Losses are sums and counts").
"""

from __future__ import annotations

import dataclasses
import random
import time

import numpy as np
import torch

from mdm.config import Config, to_dict
from mdm.data.reshard import reshard_state
from mdm.derived import Derived, lr_factor
from mdm.diffusion import Objective
from mdm.diffusion.noise import KeyedNoise, global_indices, step_generator
from mdm.fsdp import full_tensors, reshard, shard_network, sharded_like
from mdm.loading import build_objective
from mdm.models.backbone import Transformer, set_activation_checkpointing
from mdm.models.ema import EMA
from mdm.optim import build_optimizer
from mdm.pl import pl  # Lightning without its optional heavy imports (mdm/pl.py)
from mdm.vocab import Vocab


class NonFiniteLossError(FloatingPointError):
    pass


def check_batch(x: torch.Tensor, vocab: Vocab, seq_len: int) -> None:
    """Token ids must be real tokens (< mask_id) and sequences must fit the context."""
    if x.shape[-1] > seq_len:
        raise ValueError(f"batch sequences have length {x.shape[-1]} > model.seq_len={seq_len}")
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= vocab.mask_id:
        raise ValueError(
            f"token id out of range: batch has ids in [{lo}, {hi}] but real tokens are [0, {vocab.mask_id})"
        )


def build_model(cfg: Config, objective: Objective, vocab: Vocab) -> Transformer:
    return objective.build_model(cfg, vocab)


class LitDiffusion(pl.LightningModule):
    def __init__(
        self,
        cfg: Config,
        vocab: Vocab,
        derived: Derived,
        objective: Objective | None = None,
        loader_factory=None,
    ):
        super().__init__()
        self.loader_factory = loader_factory  # (split, rank, world_size) -> loader
        self.cfg, self.vocab, self.derived = cfg, vocab, derived
        self.objective = objective or build_objective(cfg, vocab)
        self.model = build_model(cfg, self.objective, vocab)
        self.ema = EMA(self.model, cfg.optim.ema) if cfg.optim.ema > 0 else None
        if cfg.train.activation_checkpointing:
            set_activation_checkpointing(self.model)
        if cfg.train.compile:  # in place: parameter names (and so checkpoints) stay those of eager
            self.model.compile()
        self.automatic_optimization = False
        self.data_state: dict | None = None  # position of the train loader after the last consumed batch
        self._pending_rng: dict | None = None
        self.wall_offset = 0.0  # wall seconds of earlier (interrupted) attempts
        self._sharded = False
        self._val = [0.0, 0.0]
        self.last_step_stats: dict = {}

    @property
    def _fp16(self) -> bool:
        return self.cfg.train.precision.startswith("16")

    # ---- data: built here because the rank is known only once the strategy is set up ------------------
    def train_dataloader(self):
        rank, world = self.global_rank, self.trainer.world_size
        loader = self.loader_factory("train", rank, world)
        # None on a fresh run; on resume rank 0's saved position, re-sharded for this rank and world size
        loader.load_state_dict(reshard_state(self.data_state, rank, world))
        return loader

    def val_dataloader(self):
        return self.loader_factory("validation", self.global_rank, self.trainer.world_size)

    # ---- sharding (train.strategy=fsdp) ---------------------------------------------------------------
    def configure_model(self):
        """Under ``train.strategy=fsdp`` (Lightning's ModelParallelStrategy, which sets a device mesh):
        FSDP2 ``fully_shard`` on every transformer block, then on the whole network (parameters become
        DTensor shards; names, and so checkpoints, are unchanged); the EMA shadows are rebuilt over the
        shards. Any other strategy: nothing to do."""
        mesh = getattr(self, "_device_mesh", None)
        if mesh is None or self._sharded:
            return
        shard_network(self.model, mesh["data_parallel"])
        self._sharded = True
        if self.ema is not None:
            self.ema = EMA(self.model, self.cfg.optim.ema)

    # ---- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.cfg.optim
        opt = build_optimizer(self.model, o, fused=not self._fp16)
        d = self.derived
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, d, o.schedule, o.min_lr_ratio, o.decay_frac)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch, batch_idx):
        started = time.perf_counter()
        pos = batch.pop("_pos", None)
        x = batch["input_ids"]
        check_batch(x, self.vocab, self.cfg.model.seq_len)
        opt, sched = self.optimizers(), self.lr_schedulers()
        world, rank = self.trainer.world_size, self.global_rank
        B = x.shape[0]
        # The step's noise is keyed by (seed, step, global sequence index), never by this process's RNG
        # (mdm/diffusion/noise.py): times for the whole global batch at once (stratified), this rank's
        # rows; every other draw from the sequence's own stream.
        t_all, seq_noise = training_noise(
            self.objective, self.cfg.train.seed, self.global_step, B, rank, world, x.device
        )
        count = self.objective.scored_tokens(batch)
        global_count = self.all_gather(count).sum() if world > 1 else count
        total = torch.zeros((), device=x.device)
        extra: dict[str, torch.Tensor] = {}  # objective-specific sums (e.g. the terms of a combined loss)
        m = self.derived.micro_batch
        for i in range(0, B, m):
            micro = {k: v[i : i + m] for k, v in batch.items()}
            out = self.objective.loss(self.model, micro, t_all[i : i + m], seq_noise[i : i + m])
            self.manual_backward(out.sum * world / global_count)
            total += out.sum.detach()
            for k, v in out.metrics.items():
                extra[k] = extra.get(k, 0.0) + v.detach().float()
        loss_sum = self.all_gather(total).sum() if world > 1 else total
        loss = loss_sum / global_count
        metrics = {
            k: ((self.all_gather(v).sum() if world > 1 else v) / global_count).item()
            for k, v in extra.items()
        }
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step + 1}; "
                f"the last good checkpoint is kept"
            )
        if self.cfg.optim.grad_clip > 0:
            if self._fp16:  # gradients are scaled: let Lightning unscale first
                self.clip_gradients(
                    opt, gradient_clip_val=self.cfg.optim.grad_clip, gradient_clip_algorithm="norm"
                )
            else:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if self.ema is not None:
            self.ema.update(self.model, self.global_step)
        if pos is not None:
            self.data_state = pos
        self.last_step_stats = {
            "loss": loss.item(),
            "lr": lr,
            "step_time": time.perf_counter() - started,
            "tokens": B * world * x.shape[1],
            "metrics": metrics,  # per scored token, like the loss
        }
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=B)
        return loss.detach()

    # ---- validation (EMA weights, fixed-seed noise) ----------------------------------------------------
    def on_validation_epoch_start(self):
        self._val = [0.0, 0.0]
        self._val_gen = torch.Generator(device=self.device).manual_seed(self.cfg.eval.seed)
        if self.ema is not None:
            reshard(self.model)
            self._ema_ctx = self.ema.swapped_in(self.model)
            self._ema_ctx.__enter__()

    def validation_step(self, batch, batch_idx):
        batch.pop("_pos", None)
        x = batch["input_ids"]
        check_batch(x, self.vocab, self.cfg.model.seq_len)
        t = self.objective.sample_times(x.shape[0], x.device, generator=self._val_gen)
        per_seq = self.objective.sequence_loss(self.model, batch, t, generator=self._val_gen)
        self._val[0] += per_seq.sum().item()
        self._val[1] += self.objective.scored_tokens(batch).item()

    def on_validation_epoch_end(self):
        if self.ema is not None:
            reshard(self.model)  # FSDP2 keeps the root unit's weights gathered after a forward
            self._ema_ctx.__exit__(None, None, None)
        s, n = self._val
        if self.trainer.world_size > 1:
            s, n = (
                self.all_gather(torch.tensor([s, n], dtype=torch.float64, device=self.device))
                .view(-1, 2)
                .sum(0)
            ).tolist()
        self.val_loss = s / n if n else float("nan")
        self.log("val_loss", self.val_loss, prog_bar=True, sync_dist=False)

    # ---- checkpoint extras: EMA, RNG, data position, wall time -----------------------------------------
    def on_save_checkpoint(self, checkpoint):
        checkpoint["mdm"] = {
            "ema": full_tensors(self.ema.state_dict()) if self.ema is not None else None,
            "rng": _rng_state(),
            "data_state": self.data_state,
            "wall_s": self.wall_offset + (time.perf_counter() - getattr(self, "_t0", time.perf_counter())),
            "vocab": dataclasses.asdict(self.vocab),
            "config": to_dict(self.cfg),
        }

    def on_load_checkpoint(self, checkpoint):
        extra = checkpoint.get("mdm")
        if extra is None:
            raise ValueError("checkpoint has no 'mdm' section: not written by mdm train")
        if self.ema is not None and extra["ema"] is not None:
            self.ema.load_state_dict(sharded_like(extra["ema"], self.ema.shadow))
        self._pending_rng = extra["rng"]
        self.data_state = extra["data_state"]
        self.wall_offset = float(extra["wall_s"])

    def on_train_start(self):
        self._t0 = time.perf_counter()
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    def wall_seconds(self) -> float:
        return self.wall_offset + (time.perf_counter() - getattr(self, "_t0", time.perf_counter()))


def training_noise(
    objective: Objective, seed: int, step: int, n: int, rank: int, world: int, device
) -> tuple[torch.Tensor, KeyedNoise]:
    """This rank's ``n`` sequences' times (n,) and per-sequence noise at optimizer step ``step``.

    Global index of row j on rank r: j * world + r (the loader's sharding); the global batch's times
    come from one generator keyed by (seed, step), so a rank's rows are exactly one process's rows.
    """
    idx = global_indices(n, rank, world)
    t_global = objective.sample_times(n * world, device, generator=step_generator(seed, step, device))
    t = t_global[torch.tensor(idx, device=device)]
    return t, KeyedNoise(seed, step, idx, device)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


__all__ = ["LitDiffusion", "NonFiniteLossError", "build_model", "check_batch"]
