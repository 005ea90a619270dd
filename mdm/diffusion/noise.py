"""Training noise keyed by (seed, step, global sequence index), so every rank draws its slice of the
global batch's noise and no RNG state is needed to resume it.

A training step's random draws are of two kinds:

* per-step draws shared by the whole global batch (the times: one stratified ``u``, or one ``U[t_min, 1]``
  per sequence): one generator seeded by ``(seed, step)`` draws them for all ``G`` sequences of the global
  batch, and each rank keeps its own rows (a few scalars: exact and cheap);
* per-sequence draws (masks, RADD orders, SEDD jumps, EDLM-NCE negatives, CCDD's continuous times and
  Gaussian noise): :class:`KeyedNoise` holds one generator per sequence, seeded by
  ``(seed, step, global index)``; a draw of shape ``(n, *rest)`` is the stack of every row's own draw of
  shape ``rest``, each from its own stream, in the order the objective makes its draws.

So a sequence's noise depends only on the run seed, the optimizer step and its index in the global
batch: not on the number of ranks, the micro-batch size, or the RNG state of the process. (Why not one
generator for the global batch, sliced per rank? Every rank would then draw every rank's masks, and
EDLM-NCE negatives / CCDD noise of ``G * L * d`` numbers, at every micro-batch; per-sequence streams cost
one ``manual_seed`` per sequence per step, measured at ~10 us each on CPU: nothing next to a step.)

The global index of row ``j`` on rank ``r`` of ``W`` is ``j * W + r``: the training loader gives rank
``r`` the blocks ``r::W`` of what one process would read at the same step (mdm/data/datamodule.py), so
row ``k`` of the one-process batch is global index ``k`` too.

Objectives draw through :func:`rand`, :func:`randn` and :func:`randint`, which take either a
:class:`KeyedNoise`, a plain ``torch.Generator`` (samplers, validation's fixed-seed noise) or None
(torch's global RNG).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def key_seed(*parts: object) -> int:
    """A 63-bit seed from the parts (``blake2b`` of their text): distinct parts give unrelated seeds."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of a step's shared draws (the global batch's times)."""
    return torch.Generator(device=device).manual_seed(key_seed("mdm-step", seed, step))


def global_indices(n: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Global batch indices of this rank's ``n`` rows: ``j * world_size + rank`` (see the module docstring)."""
    return [j * world_size + rank for j in range(n)]


class KeyedNoise:
    """One generator per sequence, seeded by ``(seed, step, index)``; slicing shares the generators."""

    def __init__(
        self,
        seed: int,
        step: int,
        indices: Sequence[int],
        device: torch.device | str = "cpu",
        _gens: list[torch.Generator] | None = None,
    ):
        self.seed, self.step, self.indices, self.device = seed, step, list(indices), torch.device(device)
        self.gens = _gens if _gens is not None else [
            torch.Generator(device=self.device).manual_seed(key_seed("mdm-seq", seed, step, i))
            for i in self.indices
        ]  # fmt: skip

    def __len__(self) -> int:
        return len(self.gens)

    def __getitem__(self, rows: slice) -> KeyedNoise:
        if not isinstance(rows, slice):
            raise TypeError("KeyedNoise is sliced by rows (a slice), like the batch it belongs to")
        return KeyedNoise(self.seed, self.step, self.indices[rows], self.device, self.gens[rows])

    def draw(self, fn, shape: Sequence[int], **kw) -> torch.Tensor:
        shape = tuple(shape)
        if not shape or shape[0] != len(self.gens):
            raise ValueError(f"a keyed draw of shape {shape} needs {len(self.gens)} rows (one per sequence)")
        if not self.gens:
            return fn(shape, **kw)
        return torch.stack([fn(shape[1:], generator=g, **kw) for g in self.gens])


Noise = KeyedNoise | torch.Generator | None


def _device(generator: Noise, device) -> torch.device | str | None:
    if device is not None:
        return device
    if isinstance(generator, KeyedNoise):
        return generator.device
    return None


def rand(shape: Sequence[int], generator: Noise = None, device=None, dtype=None) -> torch.Tensor:
    """``torch.rand(shape)``; rows from their own streams when ``generator`` is a :class:`KeyedNoise`."""
    if isinstance(generator, KeyedNoise):
        return generator.draw(torch.rand, shape, device=_device(generator, device), dtype=dtype)
    return torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)


def randn(shape: Sequence[int], generator: Noise = None, device=None, dtype=None) -> torch.Tensor:
    """``torch.randn(shape)``; rows from their own streams when ``generator`` is a :class:`KeyedNoise`."""
    if isinstance(generator, KeyedNoise):
        return generator.draw(torch.randn, shape, device=_device(generator, device), dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def randint(low: int, high: int, shape: Sequence[int], generator: Noise = None, device=None) -> torch.Tensor:
    """``torch.randint(low, high, shape)``; rows from their own streams for a :class:`KeyedNoise`."""
    if isinstance(generator, KeyedNoise):

        def fn(s, **kw):
            return torch.randint(low, high, s, **kw)

        return generator.draw(fn, shape, device=_device(generator, device))
    return torch.randint(low, high, tuple(shape), generator=generator, device=device)


__all__ = ["KeyedNoise", "global_indices", "key_seed", "rand", "randint", "randn", "step_generator"]
