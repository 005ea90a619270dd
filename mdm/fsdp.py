"""``train.strategy=fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) through Lightning.

Lightning's ``FSDPStrategy`` (FSDP1) refuses a CPU accelerator, and torch's FSDP1 wants an accelerator
device; FSDP2 runs on CPU gloo too. So ``fsdp`` is Lightning's ``ModelParallelStrategy`` with every rank
in the data-parallel dimension (no tensor parallelism), and :meth:`mdm.module.LitDiffusion.configure_model`
shards the network with :func:`shard_network`. Parameters keep their names, so a checkpoint is one full
file written by rank 0 with DDP's keys: it resumes under ``ddp`` or one process, and theirs under
``fsdp`` (:class:`FSDP2Strategy` reads a plain optimizer state, keyed by position, by parameter name).
Sharded ``torch.distributed.checkpoint`` folders (for a model too big for one host's memory) are not wired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def shard_network(net: torch.nn.Module, mesh) -> int:
    """One ``fully_shard`` unit per transformer block (a block's weights are gathered for its forward and
    backward only), the rest (embeddings, head, adaLN, wrappers) in the root unit. Returns the units."""
    from torch.distributed.fsdp import fully_shard

    from mdm.models.backbone import Transformer

    blocks = [b for m in net.modules() if isinstance(m, Transformer) for b in m.blocks]
    for b in blocks:
        fully_shard(b, mesh=mesh)
    fully_shard(net, mesh=mesh)
    return len(blocks) + 1


def reshard(net: torch.nn.Module) -> None:
    """Register every FSDP2 unit's sharded parameters again (the root keeps its weights gathered after a
    forward); nothing without a process group."""
    if not _distributed():
        return
    from torch.distributed.fsdp import FSDPModule

    for m in net.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def full_tensors(state: dict) -> dict:
    """DTensor values gathered to full tensors (a collective: every rank calls it); others as they are."""
    if not _distributed():
        return state
    from torch.distributed.tensor import DTensor

    return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}


def sharded_like(state: dict, like: dict) -> dict:
    """Full tensors of ``state`` distributed as ``like``'s DTensors (where ``like`` holds DTensors)."""
    if not _distributed():
        return state
    from torch.distributed.tensor import DTensor, distribute_tensor

    out = dict(state)
    for k, s in like.items():
        if isinstance(s, DTensor) and k in out and not isinstance(out[k], DTensor):
            out[k] = distribute_tensor(out[k].to(s.device), s.device_mesh, s.placements)
    return out


def optimizer_state_by_name(state: dict, optimizer: torch.optim.Optimizer, module: torch.nn.Module) -> dict:
    """A plain ``optimizer.state_dict()`` (parameters numbered in the order of its groups) keyed by the
    names of ``module``'s parameters instead, group by group: what ``set_optimizer_state_dict`` reads.
    (Lightning renumbers by ``module.parameters()`` order, which is not the order of our decay groups.)"""
    name_of = {id(p): n for n, p in module.named_parameters()}
    if len(state["param_groups"]) != len(optimizer.param_groups):
        raise ValueError(
            f"the checkpoint's optimizer has {len(state['param_groups'])} parameter groups, this one "
            f"{len(optimizer.param_groups)}"
        )
    by_id: dict[int, str] = {}
    for saved, group in zip(state["param_groups"], optimizer.param_groups):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError("the checkpoint's optimizer groups hold other parameters than this optimizer's")
        by_id.update({i: name_of[id(p)] for i, p in zip(saved["params"], group["params"])})
    groups = [{**g, "params": [by_id[i] for i in g["params"]]} for g in state["param_groups"]]
    return {"state": {by_id[i]: v for i, v in state["state"].items()}, "param_groups": groups}


def fsdp_strategy(world_size: int):
    """The Lightning strategy for ``train.strategy=fsdp`` over ``world_size`` ranks."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    class FSDP2Strategy(ModelParallelStrategy):
        """ModelParallelStrategy (data parallel only, one full checkpoint file) that also resumes a
        checkpoint written by ddp or one process."""

        def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict[str, Any]:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            path = Path(self.broadcast(checkpoint_path))
            if not path.is_file():
                return super().load_checkpoint(path, weights_only=weights_only)
            ck = torch.load(path, mmap=True, map_location="cpu", weights_only=weights_only)
            strict = self.lightning_module.strict_loading
            opts = StateDictOptions(full_state_dict=True, strict=strict)  # every rank holds the file
            set_model_state_dict(self.model, ck.pop("state_dict"), options=opts)
            for i, opt in enumerate(self.optimizers):
                raw = getattr(opt, "_optimizer", opt)
                state = ck["optimizer_states"][i]
                if state["state"] and isinstance(next(iter(state["state"])), int):
                    state = optimizer_state_by_name(state, raw, self.model)
                set_optimizer_state_dict(self.model, raw, optim_state_dict=state, options=opts)
            return ck

    return FSDP2Strategy(
        data_parallel_size=world_size, tensor_parallel_size=1, save_distributed_checkpoint=False
    )


__all__ = [
    "fsdp_strategy",
    "full_tensors",
    "optimizer_state_by_name",
    "reshard",
    "shard_network",
    "sharded_like",
]
