"""``mdm eval RUN_OR_CHECKPOINT``: zero-shot likelihood bounds with standard errors, LAMBADA accuracy,
generative perplexity of saved samples, and lm-evaluation-harness tasks.

    mdm eval runs/NAME --benchmarks lambada,wikitext2,ag_news [--data-dir DIR] [--time-samples K]
    mdm eval runs/NAME --text 'my/*.txt' [--text-field text] [--min-blocks 20 --max-dropped 0.25 --strict]
    mdm eval runs/NAME --genppl [SAMPLES.jsonl] --evaluator smollm2|gpt2-large|AR_RUN
    mdm eval runs/NAME --lm-eval TASKS [--lm-eval-include DIR]

Results go to ``<run>/eval/zero_shot.json``, ``eval/genppl.json`` and ``eval/lm_eval.json`` (atomic).
Without ``--benchmarks`` (and without --genppl/--lm-eval) every benchmark is tried and those whose files
cannot be had are skipped with the reason; benchmarks named explicitly must all load (exit status 2).
``--text FILE_OR_GLOB`` scores your own text (plain text, jsonl ``--text-field``, parquet column
``--text-field``) through the same protocols and standard errors. A result whose protocol leaves fewer than
``--min-blocks`` blocks, or drops more than ``--max-dropped`` of the tokens, is flagged in the table and the
JSON (``status``, ``flags``), and with ``--strict`` refused (listed under ``refused``, exit status 2 if
nothing else was scored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mdm.eval.benchmarks import BENCHMARKS, ENV_DIR, ENV_MIRROR, BenchmarkError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="zero-shot perplexity bounds, LAMBADA accuracy, gen-PPL, lm-eval tasks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run", metavar="RUN_OR_CHECKPOINT", help="a run directory, a .ckpt file or an `mdm export` folder"
    )
    p.add_argument(
        "--benchmarks",
        default=None,
        help=f"comma-separated, from: {', '.join(BENCHMARKS)} (default: all, skipping unavailable ones)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"benchmark files (default: ${ENV_DIR}, else ~/.cache/mdm/benchmarks when it holds files: "
        "`mdm benchmarks install DIR`; else the Hub)",
    )
    p.add_argument(
        "--source", default="auto", choices=["auto", "local", "hub"], help="where benchmark text comes from"
    )
    p.add_argument("--hub-mirror", default=None, help=f"local mirror of Hub dataset repos (or ${ENV_MIRROR})")
    p.add_argument("--split", default="auto", help="auto (the papers' choice, see docs) | test | validation")
    p.add_argument(
        "--protocol",
        default=None,
        choices=["mdlm", "sedd"],
        help="block protocol (default: eval.protocol = mdlm)",
    )
    p.add_argument("--time-samples", type=int, default=None, help="K Monte Carlo time samples per sequence")
    p.add_argument("--seed", type=int, default=None, help="default: the run's eval.seed")
    p.add_argument(
        "--batch-size", type=int, default=None, help="sequences per forward (default: eval.batch_size)"
    )
    p.add_argument("--max-blocks", type=int, default=None, help="score only the first N blocks per benchmark")
    p.add_argument("--text", default=None, metavar="FILE_OR_GLOB", help="score your own text file(s)")
    p.add_argument("--text-field", default="text", help="--text: jsonl field / parquet column (default text)")
    p.add_argument(
        "--text-rows", default="file", choices=["file", "lines", "paragraphs"], help="--text: plain-text rows"
    )
    p.add_argument("--min-blocks", type=int, default=None, help="flag results with fewer blocks (default 20)")
    p.add_argument(
        "--max-dropped",
        type=float,
        default=None,
        help="flag results dropping more of the tokens (default 0.25)",
    )
    p.add_argument("--strict", action="store_true", help="refuse flagged results instead of reporting them")
    p.add_argument("--max-lambada", type=int, default=None, help="LAMBADA accuracy on the first N passages")
    p.add_argument("--no-lambada-acc", action="store_true", help="skip LAMBADA last-word accuracy")
    p.add_argument("--tokenizer-dir", default=None, help="a prepared data dir holding the run's tokenizer")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write eval/*.json")
    p.add_argument(
        "--genppl",
        nargs="?",
        const="",
        default=None,
        metavar="SAMPLES.jsonl",
        help="gen-PPL of decoded samples (jsonl rows with 'text' and optionally 'tokens'; default <run>/eval/samples.jsonl)",
    )
    p.add_argument(
        "--evaluator", default="smollm2", help="gen-PPL evaluator: smollm2 | gpt2-large | AR run dir"
    )
    p.add_argument("--evaluator-context", type=int, default=1024, help="evaluator window in tokens")
    p.add_argument("--lm-eval", default=None, metavar="TASKS", help="comma-separated lm-eval task names")
    p.add_argument(
        "--lm-eval-include", default=None, metavar="DIR", help="folder of extra lm-eval task YAMLs"
    )
    p.add_argument("--lm-eval-limit", type=float, default=None, help="lm-eval: documents per task")
    p.set_defaults(func=run)


def _device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def run(args) -> int:
    import torch

    from mdm.eval.tokenizer import VocabMismatchError, run_tokenizer
    from mdm.loading import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.benchmarks is not None:  # unknown names fail before the model is loaded
            from mdm.eval.benchmarks import parse_benchmarks

            parse_benchmarks(args.benchmarks)
        texts = None
        if getattr(args, "text", None):
            from mdm.eval.text import load_text

            texts = [load_text(args.text, args.text_field, args.text_rows)]
        loaded = load_run(args.run, device=_device(args.device))
        tok = run_tokenizer(loaded.cfg, loaded.vocab, args.tokenizer_dir or loaded.export_dir)
    except (BenchmarkError, VocabMismatchError, FileNotFoundError, ValueError) as e:
        print(f"mdm eval: {e}", file=sys.stderr)
        return 2
    ecfg = loaded.cfg.eval
    status = 0
    texts_only = texts is not None and args.benchmarks is None
    only_extras = args.benchmarks is None and (args.genppl is not None or args.lm_eval is not None)
    if not only_extras or texts:
        from mdm.eval.zero_shot import MAX_DROPPED_SHARE, MIN_BLOCKS, evaluate_run

        kw = dict(
            protocol=args.protocol or ecfg.protocol,
            time_samples=args.time_samples or ecfg.time_samples,
            seed=ecfg.seed if args.seed is None else args.seed,
            batch_size=args.batch_size or ecfg.batch_size,
            split=args.split,
            data_dir=args.data_dir,
            source=args.source,
            hub_mirror=args.hub_mirror,
            max_blocks=args.max_blocks,
            max_lambada=args.max_lambada,
            lambada_acc=not args.no_lambada_acc,
            precision=args.precision,
            min_blocks=MIN_BLOCKS if getattr(args, "min_blocks", None) is None else args.min_blocks,
            max_dropped_share=MAX_DROPPED_SHARE
            if getattr(args, "max_dropped", None) is None
            else args.max_dropped,
            strict=getattr(args, "strict", False),
        )
        names = "" if texts_only or only_extras else (args.benchmarks or ",".join(BENCHMARKS))
        try:
            report = evaluate_run(
                loaded,
                tok,
                names,
                write=not args.no_write,
                skip_missing=args.benchmarks is None,
                texts=texts,
                **kw,
            )
        except (BenchmarkError, ValueError) as e:
            print(f"mdm eval: {e}", file=sys.stderr)
            return 2
        if not report["results"]:
            why = "every result was refused" if report.get("refused") else "no benchmark could be loaded"
            print(f"mdm eval: {why} (see the reasons above)", file=sys.stderr)
            status = 2
    if args.genppl is not None:
        status = max(status, _genppl(args, loaded, tok))
    if args.lm_eval is not None:
        status = max(status, _lm_eval(args, loaded, tok))
    return status


def _genppl(args, loaded, tok) -> int:
    from mdm.eval.genppl import EvaluatorError, generative_perplexity, load_evaluator
    from mdm.io import atomic_write_json, read_jsonl

    path = Path(args.genppl) if args.genppl else (Path(loaded.run_dir or ".") / "eval" / "samples.jsonl")
    if not path.is_file():
        print(f"mdm eval: samples file {path} not found (write it with `mdm sample`)", file=sys.stderr)
        return 2
    rows = read_jsonl(path)
    texts = [
        r["text"] if "text" in r else tok.decode(r["tokens"]) for r in rows if "text" in r or "tokens" in r
    ]
    ids = [r["tokens"] for r in rows if "tokens" in r]
    if not texts:
        print(f"mdm eval: {path} has no rows with 'text' or 'tokens'", file=sys.stderr)
        return 2
    try:
        scorer = load_evaluator(args.evaluator, device=_device(args.device), max_len=args.evaluator_context)
    except EvaluatorError as e:
        print(f"mdm eval: {e}", file=sys.stderr)
        return 2
    res = generative_perplexity(texts, scorer, sample_ids=ids if len(ids) == len(texts) else None)
    res["samples_file"] = str(path)
    print(
        f"[eval] gen-PPL ({res['evaluator']}): {res['gen_ppl']:.2f} "
        f"(nats/token {res['nats_per_token']:.4f} ± {res['se'] or float('nan'):.4f}), "
        f"entropy {res['entropy']:.3f} nats, {res['samples']} samples, {res['tokens_scored']:,} tokens"
    )
    if not args.no_write and loaded.run_dir is not None:
        out = Path(loaded.run_dir) / "eval" / "genppl.json"
        old = json.loads(out.read_text()) if out.exists() else {}
        old[args.evaluator if not Path(args.evaluator).exists() else f"ar:{args.evaluator}"] = res
        atomic_write_json(out, old)
        print(f"[eval] wrote {out}")
    return 0


def _lm_eval(args, loaded, tok) -> int:
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        from mdm.eval.lm_eval_adapter import MDMLM
    except ImportError as e:
        print(
            f"mdm eval: --lm-eval needs the lm-eval package ({e}); pip install -e '.[dev]'", file=sys.stderr
        )
        return 2
    from mdm.io import atomic_write_json

    ecfg = loaded.cfg.eval
    lm = MDMLM(
        loaded=loaded,
        tokenizer=tok,
        time_samples=args.time_samples or ecfg.time_samples,
        seed=ecfg.seed if args.seed is None else args.seed,
        batch_size=args.batch_size or ecfg.batch_size,
    )
    tm = TaskManager(include_path=args.lm_eval_include) if args.lm_eval_include else TaskManager()
    tasks = [t.strip() for t in args.lm_eval.split(",") if t.strip()]
    out = simple_evaluate(model=lm, tasks=tasks, task_manager=tm, limit=args.lm_eval_limit, log_samples=False)
    results = out["results"] if out else {}
    print(json.dumps(results, indent=2, default=str))
    if not args.no_write and loaded.run_dir is not None:
        path = Path(loaded.run_dir) / "eval" / "lm_eval.json"
        atomic_write_json(path, {"tasks": tasks, "time_samples": lm.K, "results": results})
        print(f"[eval] wrote {path}")
    return 0
