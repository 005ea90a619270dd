"""A data-constrained training split: its first U tokens as whole blocks (``data.unique_tokens``).

``data.unique_tokens = U > 0`` restricts the *training* loader to the first ``ceil(U / C)`` rows
("blocks") of the training split in its stored order, ``C`` being a row's content length
(``model.seq_len``, or ``seq_len - 2`` with ``data.add_bos``). In wrap mode these rows are exactly the
first ``ceil(U / C) * C`` tokens of the split's flat stream; in no-wrap mode they are the first rows of
documents cut into pieces of at most ``C`` tokens (padded, so they may hold fewer real tokens). ``0``
(the default) means the whole split. Validation and test loaders are never restricted.

Training then cycles epochs over that subset exactly as over a whole split (mdm/data/datamodule.py):
epoch ``e`` visits the subset's rows in the permutation drawn from ``default_rng([seed, e])``, every row
once per epoch on one rank (with ``W`` ranks, ``n mod W`` rows, different ones each epoch, wait for the
next epoch); the loader's position (rows consumed) resumes it bit-exactly mid-epoch.

For scaling fits (Muennighoff et al. 2023) the subset's size is counted in the unit of the training
token count, rows x ``seq_len`` (:func:`subset_tokens`), so that ``epochs = tokens / unique_tokens``.
"""

from __future__ import annotations

from mdm.data.meta import DataError

KEY = "data.unique_tokens"


def content_length(seq_len: int, add_bos: bool) -> int:
    """Tokens of the split one row holds (its BOS/EOS markers not counted)."""
    return seq_len - 2 if add_bos else seq_len


def subset_blocks(unique_tokens: int, content: int) -> int:
    """Rows of the subset: ``ceil(U / content)`` (0 for U = 0, the whole split)."""
    if unique_tokens < 0:
        raise DataError(f"{KEY}={unique_tokens} must be >= 0 (0 = the whole training split)")
    return -(-int(unique_tokens) // int(content))


def subset_tokens(unique_tokens: int, seq_len: int, add_bos: bool = False) -> int:
    """The subset's size in training-token units (rows x ``seq_len``); 0 for the whole split."""
    return subset_blocks(unique_tokens, content_length(seq_len, add_bos)) * int(seq_len)


def check_subset(unique_tokens: int, content: int, num_blocks: int, split_tokens: int, where: str) -> int:
    """The subset's row count, or a one-line DataError naming ``data.unique_tokens`` when it is negative,
    smaller than one block, or larger than the split (``num_blocks`` rows of ``split_tokens`` tokens)."""
    n = subset_blocks(unique_tokens, content)
    if 0 < unique_tokens < content:
        raise DataError(f"{KEY}={unique_tokens} is less than one block of {content} tokens")
    if n > num_blocks:
        raise DataError(
            f"{KEY}={unique_tokens} is larger than the training split of {where}: {split_tokens:,} tokens "
            f"= {num_blocks:,} whole blocks of {content} (at most {num_blocks * content:,})"
        )
    return n
