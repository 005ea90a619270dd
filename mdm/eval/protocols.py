"""Evaluation protocols: how a benchmark's tokenized rows become the fixed-length blocks that are scored.

Both protocols follow the reference code exactly (MDLM ``dataloader.py`` with ``wrap=True``; SEDD
``data.py``). Every row (document) is tokenized without special tokens and followed by EOS; the rows
are concatenated in order into one stream, which is cut into consecutive pieces; the remainder shorter
than one piece is dropped (its size is reported as ``tokens_dropped``). Every position of every block
counts in the denominator (``Objective.scored_tokens``: L per block for diffusion models, L - 1 for the
AR model, whose first token is context).

``mdlm`` (the default)
    pieces of L - 2 stream tokens, each wrapped as ``[BOS] piece [EOS]``: BOS and the added EOS are scored
    like any other token, as MDLM counts them. A tokenizer without a BOS uses EOS in its place (GPT-2
    style: BOS = EOS = ``<|endoftext|>``).
``sedd``
    pieces of L stream tokens, no BOS and no added EOS (only the EOS that ends each row).

A text longer than the context is therefore split across blocks: each block is scored on its own, with
no context carried over from the previous block (this is what the papers do; a sliding window would give
lower numbers).

Bytes: each block is credited with the UTF-8 bytes of the text its tokens encode; a row's bytes are
apportioned over its tokens by count (EOS/BOS carry none), so a row split across blocks is divided
between them and the dropped remainder carries its share away. Bits per byte = nats / ln 2 / bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PROTOCOLS = {
    "mdlm": "MDLM: rows + EOS joined, cut into L-2 pieces, each [BOS] piece [EOS]; remainder dropped; all L positions scored",
    "sedd": "SEDD: rows + EOS joined, cut into L-token blocks (no BOS); remainder dropped; all positions scored",
}


class ProtocolError(ValueError):
    pass


@dataclass
class Blocks:
    tokens: torch.Tensor  # (N, L) int64
    bytes: np.ndarray  # (N,) float64 UTF-8 bytes of text covered by each block
    protocol: str
    seq_len: int
    n_rows: int
    stream_tokens: int  # tokens in the joined stream (EOS included) before cutting
    tokens_dropped: int  # stream tokens in the dropped remainder

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def subset(self, n: int) -> Blocks:
        """The first ``n`` blocks (a quick evaluation); the rest counts as dropped."""
        if n >= len(self):
            return self
        piece = self.seq_len - (2 if self.protocol == "mdlm" else 0)
        dropped = self.tokens_dropped + (len(self) - n) * piece
        return Blocks(
            self.tokens[:n],
            self.bytes[:n],
            self.protocol,
            self.seq_len,
            self.n_rows,
            self.stream_tokens,
            dropped,
        )


def make_blocks(
    rows_ids: list[list[int]],
    rows_bytes: list[int],
    seq_len: int,
    protocol: str,
    eos_id: int,
    bos_id: int | None = None,
) -> Blocks:
    """Cut tokenized rows into blocks of ``seq_len`` under ``protocol`` (see module docstring)."""
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"protocol={protocol!r} is not valid; choose one of: {', '.join(PROTOCOLS)}")
    if eos_id is None:
        raise ProtocolError("the tokenizer has no EOS id; both protocols end every row with EOS")
    if len(rows_ids) != len(rows_bytes):
        raise ProtocolError("rows_ids and rows_bytes differ in length")
    piece = seq_len - 2 if protocol == "mdlm" else seq_len
    if piece < 1:
        raise ProtocolError(f"seq_len={seq_len} is too short for the {protocol} protocol")
    lengths = np.array([len(r) + 1 for r in rows_ids], dtype=np.int64)  # + EOS
    stream = np.empty(int(lengths.sum()), dtype=np.int64)
    tok_bytes = np.zeros(len(stream), dtype=np.float64)
    pos = 0
    for ids, nbytes in zip(rows_ids, rows_bytes):
        n = len(ids)
        stream[pos : pos + n] = ids
        stream[pos + n] = eos_id
        if n:
            tok_bytes[pos : pos + n] = nbytes / n
        pos += n + 1
    n_blocks = len(stream) // piece
    if n_blocks == 0:
        raise ProtocolError(
            f"the text has {len(stream)} tokens, fewer than one {protocol} block of {piece} tokens "
            f"(model seq_len={seq_len}): nothing to score"
        )
    kept = n_blocks * piece
    body = torch.from_numpy(stream[:kept].reshape(n_blocks, piece))
    block_bytes = tok_bytes[:kept].reshape(n_blocks, piece).sum(1)
    if protocol == "mdlm":
        bos = eos_id if bos_id is None else bos_id
        body = torch.cat(
            [
                torch.full((n_blocks, 1), bos, dtype=torch.int64),
                body,
                torch.full((n_blocks, 1), eos_id, dtype=torch.int64),
            ],
            dim=1,
        )
    return Blocks(body, block_bytes, protocol, seq_len, len(rows_ids), len(stream), len(stream) - kept)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))
