"""lm-evaluation-harness adapter: the ``lm_eval`` model ``mdm`` for any run, checkpoint or ``mdm export``
folder of this project.

Usage (Python)::

    import mdm.eval.lm_eval_adapter  # registers the model "mdm"
    from lm_eval import simple_evaluate
    simple_evaluate(model="mdm", model_args="pretrained=runs/NAME,time_samples=8", tasks=[...])

or ``mdm eval RUN --lm-eval TASKS [--lm-eval-include DIR]``.

Requests (tokenized with the run's tokenizer; every context starts with BOS, EOS for tokenizers
without one):

* ``loglikelihood(context, continuation)``: ``(log p(continuation | context), is_greedy)`` -- exact for AR;
  for diffusion models minus the conditional NELBO (a lower bound on the log-likelihood) with
  ``time_samples`` stratified time samples, and is_greedy from greedy unmasking
  (:mod:`mdm.eval.conditional`). The continuation's tokens are those of ``enc(context + continuation)``
  after ``enc(context)`` (lm-eval's convention; trailing spaces of the context move to the
  continuation). A context that does not fit is truncated from the left (continuation + context
  <= seq_len); a continuation longer than ``seq_len - 1`` raises ``ValueError``.
* ``loglikelihood_rolling(text)``: ``[BOS] + enc(text)`` is cut into consecutive pieces of ``seq_len - 1``
  tokens; each piece is scored given as many preceding tokens as fit (at least one: BOS for the first),
  so every token is scored exactly once (lm-eval's rolling-window semantics); the sum is returned.
* ``generate_until``: not implemented (raises ``NotImplementedError`` with a message).
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401  (fill the registry before adding ours, so "hf" etc. still resolve)
import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from mdm.eval.conditional import Pair, conditional_nll, greedy_match


def split_context(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing spaces to the continuation (lm-eval's convention)."""
    n = len(context) - len(context.rstrip(" "))
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def rolling_pairs(ids: list[int], prefix: int, seq_len: int) -> list[Pair]:
    """(context, piece) pairs covering ``ids`` once, pieces of ``seq_len - 1``, maximal left context."""
    toks = [prefix] + list(ids)
    piece = seq_len - 1
    out = []
    for start in range(1, len(toks), piece):
        cont = toks[start : start + piece]
        ctx = toks[max(0, start - (seq_len - len(cont))) : start]
        out.append((ctx, cont))
    return out


@register_model("mdm")
class MDMLM(LM):
    def __init__(
        self,
        pretrained: str | None = None,
        device: str = "cpu",
        time_samples: int = 1,
        seed: int = 1234,
        batch_size: int = 16,
        tokenizer_dir: str | None = None,
        loaded=None,
        tokenizer=None,
        **_ignored,
    ) -> None:
        super().__init__()
        if loaded is None:
            if pretrained is None:
                raise ValueError("model_args must give pretrained=RUN_DIR_OR_CHECKPOINT_OR_EXPORT")
            from mdm.loading import load_run

            loaded = load_run(pretrained, device=device)
        if tokenizer is None:
            from mdm.eval.tokenizer import run_tokenizer

            tokenizer = run_tokenizer(
                loaded.cfg, loaded.vocab, tokenizer_dir or getattr(loaded, "export_dir", None)
            )
        self.loaded, self.tok = loaded, tokenizer
        self.K, self.seed, self.bs = int(time_samples), int(seed), int(batch_size)
        self.seq_len = int(loaded.cfg.model.seq_len)
        self.prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id

    # -- helpers ----------------------------------------------------------------------------------------
    def _pair(self, context: str, continuation: str) -> Pair:
        context, continuation = split_context(context, continuation)
        ctx = self.tok.encode(context) if context else []
        whole = self.tok.encode(context + continuation)
        cont = whole[len(ctx) :] if whole[: len(ctx)] == ctx else self.tok.encode(continuation)
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        if len(cont) > self.seq_len - 1:
            raise ValueError(
                f"continuation of {len(cont)} tokens does not fit seq_len={self.seq_len} (with BOS)"
            )
        ctx = [self.prefix] + ctx
        room = self.seq_len - len(cont)
        return ctx[-room:], cont

    def _score(self, pairs: list[Pair]) -> np.ndarray:
        lo = self.loaded
        return conditional_nll(lo.objective, lo.model, pairs, K=self.K, seed=self.seed, batch_size=self.bs)

    # -- the LM interface -------------------------------------------------------------------------------
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        pairs = [self._pair(*r.args) for r in requests]
        if not pairs:
            return []
        nll = self._score(pairs)
        greedy = greedy_match(self.loaded.objective, self.loaded.model, pairs, batch_size=self.bs)
        return [(-float(n), bool(g)) for n, g in zip(nll, greedy)]

    def loglikelihood_rolling(self, requests) -> list[float]:
        out = []
        for r in requests:
            (text,) = r.args
            pairs = rolling_pairs(self.tok.encode(text), self.prefix, self.seq_len)
            out.append(-float(self._score(pairs).sum()) if pairs else 0.0)
        return out

    def generate_until(self, requests) -> list[str]:
        raise NotImplementedError(
            "the mdm lm-eval adapter scores text (loglikelihood, loglikelihood_rolling); generation tasks "
            "are not supported -- use `mdm sample`"
        )
