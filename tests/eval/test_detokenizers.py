"""The papers' detokenizers on hand-checked examples (each rule exercised at least once)."""

from __future__ import annotations

import pytest

from mdm.eval.detokenizers import (
    DETOKENIZERS,
    get_detokenizer,
    lambada,
    lm1b,
    ptb,
    scientific_papers,
    wikitext,
)


@pytest.mark.parametrize(
    "raw, clean",
    [
        (" a guest @-@ starring role \n", " a guest-starring role\n"),
        ("1 @,@ 000 and 3 @.@ 5", "1,000 and 3.5"),
        (
            "the series , Doctors , followed . Then ; more : here ! yes ? no",
            "the series, Doctors, followed. Then; more: here! yes? no",
        ),
        ('portrayed " Scott Parry " in', 'portrayed "Scott Parry" in'),
        ("( born 1980 ) and [ 1 ] and { x }", "(born 1980) and [1] and {x}"),
        (" = = Career = = \n", " == Career ==\n"),
        (" = = = 2000 = = = \n", " === 2000 ===\n"),
        ("the players ' union", "the players' union"),
        ("Robert <unk> 's role", "Robert <unk>'s role"),
        ("at 5 \u00b0 C", "at 5\u00b0C"),
    ],
)
def test_wikitext(raw, clean):
    assert wikitext(raw) == clean


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("no it was n't black monday", "no it wasn't black monday"),
        ("the company 's N N shares", "the company's 1 1 shares"),
        ("about $ N million", "about $1 million"),
        ("# N in line", "#1 in line"),
        ("<unk> rose 1\\/2", "? rose 1/2"),
        ("the investors ' money", "the investors' money"),
    ],
)
def test_ptb(raw, clean):
    assert ptb(raw) == clean


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Hello , world .", "Hello, world."),
        ("It costs $ 5 .", "It costs $5."),
        ("visit http : / / example.com now", "visit http://example.com now"),
        ("He 's here ; really : yes !", "He's here; really: yes!"),
        ("Is it ?", "Is it?"),
        ('He said " go home " then', 'He said "go home" then'),
        ("a ( big ) and [ small ] one", "a (big) and [small] one"),
        ("\u00a3 5 and a / b", "\u00a35 and a/b"),
    ],
)
def test_lm1b(raw, clean):
    assert lm1b(raw) == clean


def test_lambada_and_scientific_papers():
    assert lambada("  \u201cHi,\u201d she said.  ") == '\n"Hi," she said.'
    x = "costs $ 5 , as in ( Smith 2000 ) @-@ style ."
    assert scientific_papers(x) == lm1b(wikitext(x))


def test_registry():
    assert set(DETOKENIZERS) == {"wikitext", "ptb", "lm1b", "lambada", "scientific_papers", "none"}
    assert get_detokenizer("none")("a , b") == "a , b"
    with pytest.raises(KeyError, match="valid: lambada, lm1b, none"):
        get_detokenizer("nope")
