"""Per-benchmark detokenizers: the text clean-up the zero-shot tables of GPT-2, SEDD and MDLM apply
before tokenizing with the model's own tokenizer.

Several benchmarks ship pre-tokenized text (spaces around punctuation, ``@-@`` for hyphens, ``N`` for
numbers, ``<unk>``); a byte-level tokenizer pays for those artefacts, so the papers undo them first. The
rules below reproduce the published behaviour (the SEDD and MDLM evaluation code applies the same
rules); each is an ordered list of literal or regular-expression substitutions, applied once, in order.

* ``wikitext``: ``@-@``/``@,@``/``@.@`` number separators, spaces before punctuation, padded brackets
  and quotes, ``= = =`` heading markers, ``s '`` contractions; ``<unk>`` is left as is.
* ``ptb``: ``'s``/``n't`` contractions, ``\\/`` escapes, ``N`` (numbers) -> ``1``, ``<unk>`` -> ``?``.
* ``lm1b``: URLs, contractions, spaces before punctuation, padded quotes and brackets, currency signs.
* ``lambada``: curly double quotes -> straight ones; the passage is stripped and prefixed with a newline.
* ``scientific_papers`` (arXiv, PubMed): ``wikitext`` then ``lm1b``.
* ``none``: identity (AG News, user files).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Rule = tuple[str, str, bool]  # (pattern, replacement, is_regex)


def _apply(rules: list[Rule], text: str) -> str:
    for pattern, repl, is_regex in rules:
        text = re.sub(pattern, repl, text) if is_regex else text.replace(pattern, repl)
    return text


def _lit(a: str, b: str) -> Rule:
    return (a, b, False)


def _re(a: str, b: str) -> Rule:
    return (a, b, True)


# Brackets and quotes padded with spaces: "( a b )" -> "(a b)". Non-greedy inner part.
_PADDED_PAIRS = [
    _re(r"\(\s*([^\)]*?)\s*\)", r"(\1)"),
    _re(r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    _re(r"{\s*([^}]*?)\s*}", r"{\1}"),
    _re(r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    _re(r"'\s*([^']*?)\s*'", r"'\1'"),
]

WIKITEXT_RULES: list[Rule] = [
    _lit("s '", "s'"),
    _re(r"/' [0-9]/", r"/'[0-9]/"),
    _lit(" @-@ ", "-"),
    _lit(" @,@ ", ","),
    _lit(" @.@ ", "."),
    *(_lit(f" {p} ", f"{p} ") for p in (":", ";", ".", "!", "?", ",")),
    *_PADDED_PAIRS,
    _lit("= = = =", "===="),
    _lit("= = =", "==="),
    _lit("= =", "=="),
    _lit(" \u00b0 ", "\u00b0"),
    _lit(" \n", "\n"),
    _lit("\n ", "\n"),
    _lit(" N ", " 1 "),
    _lit(" 's", "'s"),
]

PTB_RULES: list[Rule] = [
    _lit(" 's", "'s"),
    _lit("s ' ", "s' "),
    _lit(" n't", "n't"),
    _lit(" \n ", "\n"),
    _lit("\\/", "/"),
    # " N N " needs more than one pass of a literal replace (matches may not overlap).
    *([_lit(" N ", " 1 ")] * 10),
    _lit("$ 1", "$1"),
    _lit("# 1", "#1"),
    _lit("<unk>", "?"),
]

LM1B_RULES: list[Rule] = [
    _lit("http : / / ", "http://"),
    _lit("https : / / ", "https://"),
    _re(r" '(\w+)", r"'\1"),
    _re(r" (\w+) \. ", r" \1. "),
    _re(r" (\w+) \.$", r" \1."),
    _lit(" ? ", "? "),
    _re(r" \?$", "?"),
    _lit(" ! ", "! "),
    _re(r" \!$", "!"),
    _lit(" , ", ", "),
    _lit(" : ", ": "),
    _lit(" ; ", "; "),
    _lit(" / ", "/"),
    _re(r"\" ([^\"]+) \"", r'"\1"'),
    _re(r"' ([^']+) '", r"'\1'"),
    _re(r"\( ([^\(\)]+) \)", r"(\1)"),
    _re(r"\[ ([^\[\]]+) \]", r"[\1]"),
    _lit("$ ", "$"),
    _lit("\u00a3 ", "\u00a3"),
]


def wikitext(text: str) -> str:
    return _apply(WIKITEXT_RULES, text)


def ptb(text: str) -> str:
    return _apply(PTB_RULES, text)


def lm1b(text: str) -> str:
    return _apply(LM1B_RULES, text)


def lambada(text: str) -> str:
    """OpenAI's LAMBADA: straight quotes; the passage starts a new line (as in SEDD/MDLM)."""
    return "\n" + text.replace("\u201c", '"').replace("\u201d", '"').strip()


def scientific_papers(text: str) -> str:
    return lm1b(wikitext(text))


def identity(text: str) -> str:
    return text


DETOKENIZERS: dict[str, Callable[[str], str]] = {
    "wikitext": wikitext,
    "ptb": ptb,
    "lm1b": lm1b,
    "lambada": lambada,
    "scientific_papers": scientific_papers,
    "none": identity,
}


def get_detokenizer(name: str) -> Callable[[str], str]:
    if name not in DETOKENIZERS:
        raise KeyError(f"unknown detokenizer {name!r}; valid: {', '.join(sorted(DETOKENIZERS))}")
    return DETOKENIZERS[name]
