"""The vocabulary layout every part of mdm relies on.

Real tokens (specials such as EOS/BOS included) occupy ids ``[0, mask_id)``; ``mask_id`` equals the
number of real tokens; ids above ``mask_id`` pad the table to ``size`` (a multiple of 64 for speed).
Models output logits over ``size``; objectives never put probability on ids ``>= mask_id``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vocab:
    size: int  # rows of the embedding table / columns of the output head
    mask_id: int  # == number of real tokens
    eos_id: int | None = None
    bos_id: int | None = None
    pad_id: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.mask_id < self.size:
            raise ValueError(f"mask_id={self.mask_id} must lie in (0, size={self.size})")

    @property
    def n_real(self) -> int:
        return self.mask_id

    @classmethod
    def from_meta(cls, meta) -> Vocab:  # meta: mdm.data.meta.DataMeta
        return cls(
            size=int(meta.vocab_size),
            mask_id=int(meta.mask_id),
            eos_id=meta.eos_id,
            bos_id=meta.bos_id,
            pad_id=meta.pad_id,
        )
