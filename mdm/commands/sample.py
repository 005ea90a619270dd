"""``mdm sample RUN [--sampler NAME --steps N --n N --seed S --evaluator AR_RUN ...]``: draw samples from a run.

RUN is a run directory, a checkpoint, or a folder written by ``mdm export``. Conditioning: ``--prompt TEXT``
(or ``--prompt-file``) keeps a prefix, ``--suffix TEXT`` a suffix, ``--infill "text [MASK:5] text"`` any
fixed positions (diffusion runs; the AR baseline takes a prompt only), ``--length N`` the sample length;
the condition is recorded in every row of ``samples.jsonl`` and in the summary.

Writes ``RUN/eval/samples.jsonl`` (one row per sample: tokens, decoded text when the run's tokenizer is
available, unigram entropy, NLL under the evaluator) and ``RUN/eval/samples_summary.json`` (sampler,
steps, NFE, wall time, tokens/s, mean unigram entropy, generative perplexity), both atomically, and prints
the summary.

Units: unigram entropy in nats (of each sample's empirical token distribution; at most log L); generative
perplexity = exp(NLL per scored token) under the evaluator, an autoregressive run of this project with the
same tokenizer (tokens 2..L of each sample are scored).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

DEFAULT_STEPS = 128


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sample", help="draw samples from a trained run; report NFE, entropy and gen. perplexity"
    )
    p.add_argument("run", help="run directory (or a checkpoint file inside one)")
    p.add_argument("--sampler", default=None, help="sampler name (default: ancestral, or analytic for sedd)")
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="time steps (first_hitting: ignored, L calls)"
    )
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--batch-size", type=int, default=16, help="samples drawn per batch")
    p.add_argument("--length", type=int, default=None, help="sample length (default: the model's seq_len)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling on the denoiser (absorbing samplers)"
    )
    p.add_argument("--block-size", type=int, default=None, help="semi_ar: block length (default L/4)")
    p.add_argument("--ar-run", default=None, help="edlm: AR run of the AR energy (for a base mdlm/radd run)")
    cond = p.add_argument_group("conditioning (text, encoded with the run's tokenizer)")
    cond.add_argument("--prompt", default=None, help="prefix text kept at the start of every sample")
    cond.add_argument("--prompt-file", default=None, help="read the prompt from this file (UTF-8)")
    cond.add_argument("--suffix", default=None, help="text kept at the end of every sample (diffusion runs)")
    cond.add_argument(
        "--infill",
        default=None,
        metavar="TEMPLATE",
        help="text with [MASK] (one token) / [MASK:n] spans to generate; the rest is kept (diffusion runs)",
    )
    p.add_argument("--temperature", type=float, default=None, help="ar sampler: softmax temperature")
    p.add_argument("--no-kv-cache", action="store_true", help="ar sampler: full forward per token")
    p.add_argument(
        "--evaluator",
        default=None,
        help="smollm2 | gpt2-large (decoded text) or an AR run of this project (dir or checkpoint)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output JSONL (default RUN/eval/samples.jsonl)")
    p.set_defaults(func=run)


PRETRAINED_EVALUATORS = ("smollm2", "gpt2-large")  # else --evaluator is an AR run of this project


def default_sampler(objective) -> str:
    """The sampler the objective declares (``Objective.default_sampler``)."""
    return getattr(objective, "default_sampler", "ancestral")


def load_text_tokenizer(run):
    """The run's tokenizer (an exported folder's own, else the one beside the run's shards), or None when
    unavailable (e.g. synthetic data)."""
    tok = getattr(run, "tokenizer", None)
    if tok is not None:
        return tok
    try:
        from mdm.data.datamodule import resolve_data_dir
        from mdm.data.tokenizer import load_tokenizer

        return load_tokenizer(resolve_data_dir(run.cfg.data))
    except Exception:  # no tokenizer beside the shards, data not prepared here, identity tokenizer
        return None


def build_template(args, tok, mask_id: int, length: int):
    """The conditioning template from --prompt/--prompt-file/--suffix/--infill, or None (unconditional)."""
    from mdm.sampling.condition import ConditionError, make_template, parse_infill

    prompt = getattr(args, "prompt", None)
    if getattr(args, "prompt_file", None):
        if prompt is not None:
            raise ConditionError("give --prompt or --prompt-file, not both")
        path = Path(args.prompt_file)
        if not path.is_file():
            raise FileNotFoundError(f"--prompt-file {path} not found")
        prompt = path.read_text(encoding="utf-8")
    infill, suffix = getattr(args, "infill", None), getattr(args, "suffix", None)
    if prompt is None and suffix is None and infill is None:
        return None
    if infill is not None and (prompt is not None or suffix is not None):
        raise ConditionError("--infill is a whole template: do not combine it with --prompt/--suffix")
    if tok is None:
        raise ConditionError("conditioning needs the run's text tokenizer, and this run has none")
    if infill is not None:
        return parse_infill(infill, tok.encode, mask_id, length)
    pre = tok.encode(prompt) if prompt else []
    suf = tok.encode(suffix) if suffix else []
    return make_template(length, mask_id, pre, suf)


def draw_samples(
    objective,
    model,
    sampler: str,
    n: int,
    length: int,
    steps: int,
    seed: int,
    batch_size: int,
    device: str = "cpu",
    **options,
) -> dict:
    """Draw ``n`` samples in batches: tokens (n, L), network calls, per-sequence NFE, wall seconds."""
    from mdm.sampling.base import check_fits, get_sampler

    fn = get_sampler(sampler)
    check_fits(sampler, objective)
    g = torch.Generator(device=device).manual_seed(seed)
    tokens, calls, per_seq, wall = [], 0, [], 0.0
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        res = fn(objective, model, (b, length), steps, g, device=device, **options)
        tokens.append(res.tokens.cpu())
        calls += res.nfe
        wall += res.wall_s
        per_seq += [res.extra.get("nfe_per_sequence", res.nfe)] * b
    out = torch.cat(tokens)
    template = options.get("template")
    free = int((template == objective.vocab.mask_id).sum()) if template is not None else length
    if template is None and getattr(objective, "causal", False):
        free = length - 1  # the AR sampler starts from BOS
    generated = free * len(out)
    return {
        "tokens": out,
        "network_calls": calls,
        "nfe_per_sequence": sum(per_seq) / len(per_seq),
        "wall_s": wall,
        "generated_tokens": generated,
        "tokens_per_s": generated / wall if wall > 0 else None,
        "wall_s_per_sample": wall / len(out),
    }


def evaluate_with_ar(evaluator: str, cfg, vocab, tokens: torch.Tensor, device: str, batch_size: int):
    """Per-sample NLL (nats) and counts under an AR run with the same tokenizer."""
    from mdm.loading import load_run
    from mdm.sampling.metrics import ar_nll

    ev = load_run(evaluator, device)
    if ev.cfg.objective.name != "ar":
        raise ValueError(
            f"--evaluator {evaluator} is a {ev.cfg.objective.name!r} run; it must be an 'ar' run"
        )
    same = (ev.cfg.data.name, ev.cfg.data.tokenizer, ev.vocab.mask_id) == (
        cfg.data.name,
        cfg.data.tokenizer,
        vocab.mask_id,
    )
    if not same:
        raise ValueError(
            f"--evaluator {evaluator} uses data {ev.cfg.data.name}/{ev.cfg.data.tokenizer} with {ev.vocab.mask_id} "
            f"real tokens; the samples use {cfg.data.name}/{cfg.data.tokenizer} with {vocab.mask_id}: not comparable"
        )
    return ar_nll(ev.objective, ev.model, tokens, batch_size)


def run(args) -> int:
    try:
        summary = sample_command(args)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:  # ConditionError is a ValueError
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"mdm sample: error: {msg}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def sample_command(args) -> dict:
    import mdm.sampling  # noqa: F401  (registers the samplers)
    from mdm.io import atomic_write_json, atomic_write_text
    from mdm.loading import load_run
    from mdm.sampling.base import check_fits, get_sampler
    from mdm.sampling.metrics import generative_perplexity, unigram_entropy

    for name in ("n", "batch_size", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    run = load_run(args.run, args.device)
    sampler = args.sampler or default_sampler(run.objective)
    get_sampler(sampler)  # unknown name -> KeyError listing the valid ones
    check_fits(sampler, run.objective)
    length = args.length or run.cfg.model.seq_len
    if not 1 <= length <= run.cfg.model.seq_len:
        raise ValueError(f"--length {length} must lie in [1, model.seq_len={run.cfg.model.seq_len}]")
    options = {}
    if args.top_p is not None:
        options["top_p"] = args.top_p
    if args.block_size is not None:
        options["block_size"] = args.block_size
    if getattr(args, "ar_run", None) is not None:
        options["ar_run"] = args.ar_run
    if getattr(args, "temperature", None) is not None:
        if sampler != "ar":
            raise ValueError(f"--temperature applies to the ar sampler, not {sampler!r}")
        options["temperature"] = args.temperature
    if getattr(args, "no_kv_cache", False):
        if sampler != "ar":
            raise ValueError(f"--no-kv-cache applies to the ar sampler, not {sampler!r}")
        options["kv_cache"] = False
    tok = load_text_tokenizer(run)
    template = build_template(args, tok, run.vocab.mask_id, length)
    if template is not None:
        if sampler == "ar":
            from mdm.sampling.condition import prefix_length

            prefix_length(template, run.vocab.mask_id)  # suffix / infill: a clear error before sampling
        options["template"] = template
    started = time.perf_counter()
    drawn = draw_samples(
        run.objective,
        run.model,
        sampler,
        args.n,
        length,
        args.steps,
        args.seed,
        args.batch_size,
        args.device,
        **options,
    )
    tokens = drawn["tokens"]
    entropy = unigram_entropy(tokens)
    nll = counts = None
    decode = tok.decode if tok is not None else None
    pretrained = None  # an offline pretrained LM on decoded text (mdm.eval.genppl)
    if args.evaluator in PRETRAINED_EVALUATORS:
        if decode is None:
            raise ValueError(
                f"--evaluator {args.evaluator} scores decoded text, but this run has no tokenizer"
            )
        from mdm.eval.genppl import evaluate_samples

        ids = tokens.tolist()
        pretrained = evaluate_samples(args.evaluator, [decode(t) for t in ids], ids, args.device)
    elif args.evaluator:
        nll, counts = evaluate_with_ar(
            args.evaluator, run.cfg, run.vocab, tokens, args.device, args.batch_size
        )
    from mdm.sampling.condition import describe

    condition = describe(template, run.vocab.mask_id)
    if condition is not None and decode is not None:
        condition["text"] = {
            k: getattr(args, k)
            for k in ("prompt", "prompt_file", "suffix", "infill")
            if getattr(args, k, None)
        }
    rows = []
    for i in range(len(tokens)):
        row = {"index": i, "tokens": tokens[i].tolist(), "unigram_entropy_nats": float(entropy[i])}
        if condition is not None:
            row["condition"] = condition
        if decode is not None:
            row["text"] = decode(tokens[i].tolist())
        if nll is not None:
            row["ar_nll_nats"], row["ar_scored_tokens"] = float(nll[i]), int(counts[i])
        rows.append(row)
    base = Path(args.out) if args.out else (run.run_dir or Path(args.run).parent) / "eval" / "samples.jsonl"
    atomic_write_text(base, "".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "run": str(run.run_dir or run.checkpoint),
        "step": run.step,
        "objective": run.cfg.objective.name,
        "sampler": sampler,
        "steps": args.steps,
        "options": {k: v for k, v in options.items() if k != "template"},
        "condition": condition,
        "n": len(tokens),
        "length": length,
        "seed": args.seed,
        "network_calls": drawn["network_calls"],
        "nfe_per_sequence": drawn["nfe_per_sequence"],
        "sampling_wall_s": drawn["wall_s"],
        "sampling_wall_s_per_sample": drawn["wall_s_per_sample"],
        "generated_tokens": drawn["generated_tokens"],
        "tokens_per_s": drawn["tokens_per_s"],
        "wall_s": time.perf_counter() - started,
        "unigram_entropy_nats": float(entropy.mean()),
        "unigram_entropy_units": "nats per sample (empirical token distribution of each sample; max log L)",
        "evaluator": args.evaluator,
        "gen_ppl": generative_perplexity(nll, counts)
        if nll is not None
        else (pretrained or {}).get("gen_ppl"),
        "pretrained_evaluation": pretrained,
        "gen_nll_per_token_nats": float(nll.sum() / counts.sum()) if nll is not None else None,
        "decoded": decode is not None,
        "samples_file": str(base),
    }
    atomic_write_json(base.with_name(base.stem + "_summary.json"), summary)
    return summary
