"""What the sweep planner counts for a run: parameters, FLOPs per token and the derived step count, from
the config alone. No data is prepared, no checkpoint loaded, no network built and torch is not imported,
so ``mdm sweep plan/status/collect`` start in a fraction of a second.

* The vocabulary: the data directory's ``meta.json`` when the data is prepared (exact); otherwise what the
  tokenizer recipe gives (:func:`expected_vocab`; the plan says so).
* Counts: :func:`mdm.derived.backbone_counts` for objectives whose trained network is the shared backbone
  and that make no extra passes (:data:`BACKBONE_OBJECTIVES`, with their default time conditioning;
  tests/sweep/test_plan_counts.py checks the table against the registry's classes and every count
  against the objective's own on a built network). Any other objective (EDLM-NCE's energy network and
  frozen base, CCDD's encoder) is counted by the build step, :func:`mdm.runprep.prepare_run`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdm.config import Config
from mdm.data.meta import load_meta, padded_vocab_size
from mdm.data.paths import resolve_data_dir
from mdm.derived import Derived, backbone_counts, derive, world_size
from mdm.flops import Counts
from mdm.vocab import Vocab

# objective -> (default model.time_conditioning, whether it takes time conditioning), for objectives that
# train the plain backbone with one forward and backward per token (Objective.build_model, count_options
# and extra_flops_per_token not overridden); checked against mdm.diffusion's registry by
# tests/sweep/test_plan_counts.py.
BACKBONE_OBJECTIVES = {
    "mdlm": (False, True),
    "ar": (False, False),
    "radd": (False, False),
    "sedd": (True, True),
}

# real tokens (the mask id) of the fixed tokenizers (mdm/data/tokenizer.py)
_FIXED_REAL_TOKENS = {"gpt2": 50257, "bert": 30522}


@dataclass(frozen=True)
class PlanCounts:
    counts: Counts
    derived: Derived
    vocab: Vocab
    vocab_exact: bool  # read from the prepared data's meta.json (else expected from the recipe)


def expected_vocab(data) -> Vocab:
    """The vocabulary preparing ``data`` gives: synthetic ``vocab`` real tokens + EOS; BPE ``vocab_size - 1``
    real tokens; char at most ``vocab_size - 1`` (the ``vocab_size - 3`` most frequent characters, EOS,
    UNK: exact when the corpus has that many distinct characters); gpt2 / bert their fixed vocabularies.
    Size and mask id only (the counts need nothing else)."""
    if data.name == "synthetic":
        mask = data.synthetic.vocab + 1
    elif data.tokenizer in _FIXED_REAL_TOKENS:
        mask = _FIXED_REAL_TOKENS[data.tokenizer]
    else:
        mask = data.vocab_size - 1
    return Vocab(size=padded_vocab_size(mask), mask_id=mask)


def planned_vocab(data) -> tuple[Vocab, bool]:
    """(vocabulary, exact): the prepared directory's meta.json if there is one, else :func:`expected_vocab`."""
    d = resolve_data_dir(data)
    if (d / "meta.json").is_file():
        return Vocab.from_meta(load_meta(d)), True
    return expected_vocab(data), False


def plan_counts(cfg: Config, vocab: tuple[Vocab, bool] | None = None) -> PlanCounts:
    """Counts and derived values of the run ``cfg`` describes, as ``mdm train`` will compute them."""
    voc, exact = vocab if vocab is not None else planned_vocab(cfg.data)
    name = cfg.objective.name
    if name in BACKBONE_OBJECTIVES:
        default, supported = BACKBONE_OBJECTIVES[name]
        tc = default if cfg.model.time_conditioning is None else cfg.model.time_conditioning
        if tc and not supported:  # the objective's own check (mdm.diffusion.base.Objective)
            raise ValueError(f"objective {name!r} takes no time conditioning (model.time_conditioning)")
        counts = backbone_counts(cfg.model, voc.size, tc)
        return PlanCounts(counts, derive(cfg, counts, world_size(cfg)), voc, exact)
    from mdm.runprep import prepare_run  # an objective with its own network or frozen parts: build it

    p = prepare_run(cfg)
    return PlanCounts(p["counts"], p["derived"], p["vocab"], True)
