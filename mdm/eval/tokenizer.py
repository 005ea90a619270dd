"""The tokenizer a run was trained with, checked against the checkpoint's vocabulary.

A run's tokenizer lives beside its token shards (``tokenizer.json`` in the prepared data directory that
``cfg.data`` resolves to; :func:`mdm.data.tokenizer.load_tokenizer`). Evaluation refuses a tokenizer
whose vocabulary does not match the checkpoint's (a re-prepared data directory, another tokenizer):
the ids would silently mean other strings.
"""

from __future__ import annotations

from pathlib import Path


class VocabMismatchError(ValueError):
    """The checkpoint and the tokenizer disagree on the vocabulary."""


def check_vocab(tok, vocab, where: str = "tokenizer") -> None:
    """``tok.n_real`` real tokens and its EOS must match the checkpoint's ``Vocab`` exactly."""
    problems = []
    if tok.n_real != vocab.mask_id:
        problems.append(f"{tok.n_real} real tokens vs mask_id={vocab.mask_id} in the checkpoint")
    if vocab.eos_id is not None and tok.eos_id is not None and tok.eos_id != vocab.eos_id:
        problems.append(f"EOS id {tok.eos_id} vs {vocab.eos_id} in the checkpoint")
    if vocab.bos_id is not None and tok.bos_id is not None and tok.bos_id != vocab.bos_id:
        problems.append(f"BOS id {tok.bos_id} vs {vocab.bos_id} in the checkpoint")
    if problems:
        raise VocabMismatchError(
            f"the checkpoint's vocabulary does not match {where}: "
            + "; ".join(problems)
            + ". Evaluate with the tokenizer the run was trained with (--tokenizer-dir DATA_DIR)."
        )


def run_tokenizer(cfg, vocab, tokenizer_dir: str | Path | None = None):
    """Load and check the tokenizer of a run (``tokenizer_dir``: a prepared data dir; default: the run's)."""
    from mdm.data.datamodule import resolve_data_dir
    from mdm.data.meta import DataError, load_meta
    from mdm.data.tokenizer import load_tokenizer

    data_dir = Path(tokenizer_dir) if tokenizer_dir is not None else resolve_data_dir(cfg.data)
    try:
        meta = load_meta(data_dir)
    except DataError as e:
        raise FileNotFoundError(
            f"no tokenizer for this run: {e}. Prepare the run's data (`mdm data prepare` with its config) "
            f"or pass --tokenizer-dir DATA_DIR"
        ) from e
    if meta.tokenizer_file is None:
        raise ValueError(
            f"{data_dir} ({meta.name}, tokenizer={meta.tokenizer!r}) has no text tokenizer: text benchmarks "
            f"need a model trained on text"
        )
    tok = load_tokenizer(data_dir)
    check_vocab(tok, vocab, where=f"the tokenizer in {data_dir}")
    return tok
