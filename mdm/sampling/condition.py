"""Conditioning templates for generation: a prompt (prefix), a suffix, or arbitrary fixed positions (infilling).

A template is an int64 tensor of token ids, (L,) for every row or (B, L) per row, holding ``mask_id`` at the
positions to generate and a real token at every position to keep. An absorbing sampler starts its chain at the
template instead of the all-mask state; unmasked tokens never move in the absorbing reverse process, so the
given tokens come out bit-identical and, with exact conditionals, the generated ones follow
p(x_free | x_fixed) (docs/MATH.md "Samplers": the chain started at z = template is the reverse process conditioned
on those tokens being clean). The AR sampler takes a prefix only.

Text templates (``mdm sample --infill``): the text is encoded with the run's tokenizer, and every
``[MASK]`` (one token) or ``[MASK:n]`` (n tokens) span becomes positions to generate. Positions after the
template up to ``--length`` are generated too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

MASK_SPAN = re.compile(r"\[MASK(?::(\d+))?\]")


class ConditionError(ValueError):
    """A template that does not fit the sampler, the length or the vocabulary."""


def make_template(
    length: int,
    mask_id: int,
    prefix: Sequence[int] = (),
    suffix: Sequence[int] = (),
) -> torch.Tensor:
    """(length,) template with ``prefix`` at the start, ``suffix`` at the end and masks between."""
    prefix, suffix = list(prefix), list(suffix)
    if len(prefix) + len(suffix) > length:
        raise ConditionError(
            f"prompt ({len(prefix)} tokens) and suffix ({len(suffix)} tokens) do not fit --length {length}"
        )
    out = torch.full((length,), mask_id, dtype=torch.long)
    if prefix:
        out[: len(prefix)] = torch.tensor(prefix, dtype=torch.long)
    if suffix:
        out[length - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
    return out


def parse_infill(text: str, encode: Callable[[str], list[int]], mask_id: int, length: int) -> torch.Tensor:
    """(length,) template from text with ``[MASK]`` / ``[MASK:n]`` spans; the tail after it is generated."""
    ids: list[int] = []
    pos = 0
    spans = 0
    for m in MASK_SPAN.finditer(text):
        if m.start() > pos:
            ids += encode(text[pos : m.start()])
        n = int(m.group(1)) if m.group(1) is not None else 1
        if n < 1:
            raise ConditionError(f"--infill span {m.group(0)!r} must generate at least one token")
        ids += [mask_id] * n
        spans += 1
        pos = m.end()
    if pos < len(text):
        ids += encode(text[pos:])
    if spans == 0 and len(ids) >= length:
        raise ConditionError(
            "--infill template has no [MASK] or [MASK:n] span and fills --length: nothing to generate"
        )
    if len(ids) > length:
        raise ConditionError(f"--infill template is {len(ids)} tokens long, more than --length {length}")
    out = torch.full((length,), mask_id, dtype=torch.long)
    out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def check_template(template: torch.Tensor, shape: tuple[int, int], mask_id: int) -> torch.Tensor:
    """Validate and broadcast a template to ``shape`` = (B, L); returns a (B, L) int64 tensor (a copy)."""
    B, L = shape
    t = torch.as_tensor(template, dtype=torch.long)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[-1] != L or t.shape[0] not in (1, B):
        raise ConditionError(
            f"template of shape {tuple(template.shape)} does not fit samples of shape {(B, L)}"
        )
    if int(t.min()) < 0 or int(t.max()) > mask_id:
        raise ConditionError(
            f"template ids must be real tokens in [0, {mask_id}) or the mask {mask_id}; got {int(t.min())}..{int(t.max())}"
        )
    return t.expand(B, L).clone()


def start_state(template: torch.Tensor | None, shape: tuple[int, int], mask_id: int, device) -> torch.Tensor:
    """The chain's start: all masks, or the template (broadcast to ``shape``) on ``device``."""
    if template is None:
        return torch.full(shape, mask_id, dtype=torch.long, device=device)
    return check_template(template, shape, mask_id).to(device)


def prefix_length(template: torch.Tensor, mask_id: int) -> int:
    """Length of a prefix-only template (fixed tokens then masks); ConditionError for any other shape.

    ``template`` is (L,) or (B, L) with the same layout in every row."""
    t = torch.as_tensor(template)
    rows = t.reshape(-1, t.shape[-1])
    fixed = rows != mask_id
    n = int(fixed[0].sum())
    if not bool(fixed[:, :n].all()) or bool(fixed[:, n:].any()) or not bool((rows == rows[0]).all()):
        raise ConditionError(
            "the AR sampler conditions on a prefix only (one prompt for every row, generated tokens after it); "
            "use an absorbing diffusion run for suffixes and infilling"
        )
    return n


def describe(template: torch.Tensor | None, mask_id: int) -> dict | None:
    """What samples.jsonl records about a (L,) template: kind, fixed positions and their tokens."""
    if template is None:
        return None
    t = torch.as_tensor(template).reshape(-1)
    fixed = (t != mask_id).nonzero().flatten().tolist()
    L = len(t)
    n = len(fixed)
    if n == 0:
        kind = "none"
    elif fixed == list(range(n)):
        kind = "prefix"
    elif fixed == list(range(L - n, L)):
        kind = "suffix"
    else:
        kind = "infill"
    return {"kind": kind, "length": L, "fixed_positions": fixed, "fixed_tokens": t[fixed].tolist()}
