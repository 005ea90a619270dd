"""``meta.json``: what a prepared data directory holds.

Vocabulary convention (every model, objective and sampler relies on it):

* real tokens -- ordinary tokens and specials such as EOS/BOS/PAD -- occupy ids ``[0, mask_id)``;
* ``mask_id`` equals the number of real tokens;
* ids ``> mask_id`` are padding up to ``vocab_size``, a multiple of 64 (the model's output width).

Models emit logits over ``vocab_size``; objectives forbid ids ``>= mask_id`` in their outputs. Shards
never contain ``mask_id`` or padding ids.

Shard layout (``layout == "flat-eos"``): each split is one flat token file ``<split>.bin`` (numpy
``dtype``) in which every document is followed by ``eos_id``, plus ``<split>.idx`` (int64, ``n + 1``
document start offsets, the last being the token count). A split larger than ``prepare.shard_tokens``
is instead several shards ``<split>-00000.bin`` / ``.idx`` ... (each the same format, offsets local to
the shard), listed in order in ``SplitInfo.shards``; the loader reads them as one stream. The synthetic
source uses ``"stream"``: one document per split (a single stationary Markov chain), no EOS anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META_FILE = "meta.json"
FORMAT_VERSION = 1
VOCAB_MULTIPLE = 64


class DataError(ValueError):
    """A problem with input data or a prepared data directory; the message names the file/key/value."""


def padded_vocab_size(mask_id: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """Model vocabulary: the real tokens plus the mask token, rounded up to a multiple of ``multiple``."""
    return int(math.ceil((mask_id + 1) / multiple) * multiple)


def dtype_for(mask_id: int, requested: str = "auto") -> str:
    """Smallest shard dtype holding ids ``[0, mask_id)``; a too-small ``requested`` dtype is an error."""
    limits = {"uint16": 1 << 16, "uint32": 1 << 32}
    if requested == "auto":
        return "uint16" if mask_id <= limits["uint16"] else "uint32"
    if requested not in limits:
        raise DataError(f"data.dtype={requested!r} is not valid; choose one of: auto, uint16, uint32")
    if mask_id > limits[requested]:
        raise DataError(
            f"vocabulary of {mask_id} real tokens does not fit data.dtype={requested} "
            f"(max {limits[requested]} ids); use uint32 or auto"
        )
    return requested


@dataclass
class SplitInfo:
    """One split's shard files and counts."""

    tokens: int  # tokens in <split>.bin (EOS separators included)
    documents: int
    file: str  # relative to the data dir
    sha256: str
    index_file: str | None = None  # int64 document offsets, n_documents + 1 entries
    # Several shards (a prepare of more than prepare.shard_tokens tokens): ``file``/``index_file`` are
    # then the name patterns ``<split>-*.bin``/``.idx``, ``sha256`` is that of the whole token stream
    # (the shards concatenated in order) and each entry holds a shard's file, index_file (offsets local
    # to the shard), tokens, documents and sha256. None (left out of meta.json): one file per split.
    shards: list[dict[str, Any]] | None = None


@dataclass
class DataMeta:
    """Everything a consumer needs to know about a prepared data directory (see module docstring)."""

    name: str  # source name (books, synthetic, ...)
    tokenizer: str  # bpe | gpt2 | bert | char | identity (synthetic)
    vocab_size: int  # padded model vocabulary, multiple of 64
    mask_id: int  # == number of real tokens
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None  # token written into padded positions of no-wrap rows (a real token id)
    dtype: str  # uint16 | uint32
    splits: dict[str, SplitInfo] = field(default_factory=dict)
    layout: str = "flat-eos"  # flat-eos | stream
    tokenizer_file: str | None = None  # relative path of a tokenizers JSON beside the shards
    tokenizer_sha256: str | None = None  # sha256 of tokenizer_file (which tokenizer made the ids)
    sources: list[dict[str, Any]] = field(default_factory=list)  # name, version, sha256, licence, ...
    entropy_per_token: float | None = None  # synthetic: exact entropy rate in nats/token
    synthetic: dict[str, Any] | None = None  # synthetic: parameters and exact entropies
    config: dict[str, Any] = field(default_factory=dict)  # the DataConfig fields that shaped the shards
    format_version: int = FORMAT_VERSION

    # -- convenience views -------------------------------------------------------------------------
    @property
    def tokens_per_split(self) -> dict[str, int]:
        return {k: v.tokens for k, v in self.splits.items()}

    @property
    def n_documents(self) -> dict[str, int]:
        return {k: v.documents for k, v in self.splits.items()}

    @property
    def num_real_tokens(self) -> int:
        return self.mask_id

    def block_entropy(self, seq_len: int) -> float | None:
        """Exact entropy per token (nats) of a wrapped block of ``seq_len`` synthetic tokens.

        A block cut from a stationary order-k chain has entropy ``H_k + (L - k) h`` where ``H_k`` is the
        joint entropy of k consecutive stationary tokens and ``h`` the entropy rate; per token this is
        ``(H_k + (L - k) h) / L >= h``, the floor a model's NELBO per token approaches on such blocks
        (without BOS/EOS). Returns None for non-synthetic data.
        """
        if self.synthetic is None or self.entropy_per_token is None:
            return None
        k = int(self.synthetic["order"])
        if seq_len < k:
            raise DataError(f"seq_len={seq_len} is shorter than the chain order {k}")
        h_k = float(self.synthetic["entropy_first_k"])
        return (h_k + (seq_len - k) * self.entropy_per_token) / seq_len

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for info in d["splits"].values():
            if info.get("shards") is None:
                info.pop("shards", None)  # one file per split: meta.json as before sharding existed
        d["tokens_per_split"] = self.tokens_per_split  # redundant, for humans and grep
        d["n_documents"] = self.n_documents
        return d

    def to_json(self, path: str | Path | None = None) -> str:
        """The JSON text; with ``path``, also write it atomically (tmp + os.replace)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        if path is not None:
            path = Path(path)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataMeta:
        d = dict(d)
        d.pop("tokens_per_split", None)
        d.pop("n_documents", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"meta.json has unknown keys {unknown} (written by a newer mdm?)")
        d["splits"] = {k: SplitInfo(**v) for k, v in d.get("splits", {}).items()}
        meta = cls(**d)
        meta.check()
        return meta

    def check(self) -> None:
        """Validate the vocabulary convention; raise DataError naming the offending field."""
        if self.format_version != FORMAT_VERSION:
            raise DataError(f"meta.json format_version={self.format_version}, expected {FORMAT_VERSION}")
        if self.vocab_size % VOCAB_MULTIPLE or self.vocab_size <= self.mask_id:
            raise DataError(
                f"meta.json vocab_size={self.vocab_size} must be a multiple of {VOCAB_MULTIPLE} "
                f"greater than mask_id={self.mask_id}"
            )
        for key in ("bos_id", "eos_id", "pad_id"):
            v = getattr(self, key)
            if v is not None and not 0 <= v < self.mask_id:
                raise DataError(f"meta.json {key}={v} must be a real token id in [0, {self.mask_id})")
        dtype_for(self.mask_id, self.dtype)


def load_meta(data_dir: str | Path) -> DataMeta:
    """Read ``<data_dir>/meta.json``; a missing/corrupt file raises DataError naming the path."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: the data directory is not prepared (run `mdm data prepare`)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    try:
        return DataMeta.from_dict(raw)
    except TypeError as e:
        raise DataError(f"{path}: {e}") from e
