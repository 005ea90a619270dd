"""MDLM and SEDD block protocols on hand-made token streams."""

from __future__ import annotations

import pytest

from mdm.eval.protocols import ProtocolError, make_blocks


def test_mdlm_wraps_pieces_of_L_minus_2_with_bos_and_eos():
    b = make_blocks([[1, 2, 3], [4, 5]], [6, 4], seq_len=5, protocol="mdlm", eos_id=9, bos_id=8)
    # stream: 1 2 3 9 4 5 9 -> pieces of 3: [1 2 3] [9 4 5], remainder [9] dropped
    assert b.tokens.tolist() == [[8, 1, 2, 3, 9], [8, 9, 4, 5, 9]]
    assert (b.stream_tokens, b.tokens_dropped, b.n_rows) == (7, 1, 2)
    assert b.bytes.tolist() == [6.0, 4.0]  # row bytes spread over its tokens; EOS/BOS carry none


def test_sedd_cuts_blocks_of_L_without_bos():
    b = make_blocks([[1, 2, 3], [4, 5]], [6, 4], seq_len=3, protocol="sedd", eos_id=9, bos_id=8)
    assert b.tokens.tolist() == [[1, 2, 3], [9, 4, 5]] and b.tokens_dropped == 1
    assert b.bytes.tolist() == [6.0, 4.0]


def test_partial_rows_share_bytes_and_bos_falls_back_to_eos():
    b = make_blocks([[1, 2, 3, 4]], [8], seq_len=4, protocol="mdlm", eos_id=0, bos_id=None)
    assert b.tokens.tolist() == [[0, 1, 2, 0], [0, 3, 4, 0]]  # BOS = EOS when the tokenizer has no BOS
    assert b.bytes.tolist() == [4.0, 4.0] and b.tokens_dropped == 1
    sub = b.subset(1)
    assert len(sub) == 1 and sub.tokens_dropped == 1 + 2


def test_bad_input():
    with pytest.raises(ProtocolError, match="fewer than one mdlm block"):
        make_blocks([[1, 2]], [2], seq_len=8, protocol="mdlm", eos_id=0)
    with pytest.raises(ProtocolError, match="choose one of: mdlm, sedd"):
        make_blocks([[1]], [1], seq_len=8, protocol="gpt2", eos_id=0)
    with pytest.raises(ProtocolError, match="too short"):
        make_blocks([[1]], [1], seq_len=2, protocol="mdlm", eos_id=0)
