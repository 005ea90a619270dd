"""Evaluation: likelihood bounds with standard errors on zero-shot benchmarks, LAMBADA accuracy,
generative perplexity with an offline evaluator, and an lm-evaluation-harness adapter.

* :mod:`mdm.eval.benchmarks`   benchmark registry, local-file and Hub loaders
* :mod:`mdm.eval.detokenizers` the papers' per-benchmark detokenizers
* :mod:`mdm.eval.protocols`    MDLM and SEDD block protocols
* :mod:`mdm.eval.bound`        K-sample stratified bound estimator and standard errors
* :mod:`mdm.eval.conditional`  -log p(continuation | context) and greedy completion for any objective
* :mod:`mdm.eval.lambada`      LAMBADA last-word accuracy
* :mod:`mdm.eval.zero_shot`    orchestration, the table and ``eval/zero_shot.json``
* :mod:`mdm.eval.genppl`       generative perplexity (SmolLM2 GGUF offline, GPT-2 large, project AR runs)
* :mod:`mdm.eval.lm_eval_adapter` ``lm_eval`` model ``mdm``
* :mod:`mdm.eval.edlm`         EDLM's bound (owned by the EDLM objective)

Submodules are imported on demand (``transformers`` and ``lm_eval`` are heavy).
"""
