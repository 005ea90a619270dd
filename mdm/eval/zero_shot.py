"""Zero-shot evaluation of a trained run: benchmarks -> detokenize -> run's tokenizer -> protocol blocks ->
likelihood bound with a standard error (+ LAMBADA accuracy) -> a table and ``eval/zero_shot.json``.

``zero_shot.json`` (written atomically into the run directory's ``eval/``) holds one entry per benchmark
under ``results``; a later evaluation of the same benchmark replaces its entry and keeps the others.
Every entry is self-describing (protocol, split, K, seed, source file or Hub id, release, tokens scored).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from pathlib import Path
from typing import Any

from mdm.eval.benchmarks import Benchmark, BenchmarkError, load_benchmark, parse_benchmarks
from mdm.eval.bound import SE_METHOD, estimate_bound
from mdm.eval.lambada import lambada_accuracy, lambada_examples
from mdm.eval.protocols import PROTOCOLS, ProtocolError, make_blocks, utf8_len
from mdm.io import atomic_write_json

RESULT_FILE = "zero_shot.json"
DEFAULT_PROTOCOL = "mdlm"
MIN_BLOCKS = 20  # fewer blocks: the standard error over blocks means little (flagged)
MAX_DROPPED_SHARE = (
    0.25  # the protocol drops more of the text than this: the number is not the text's (flagged)
)


class RefusedError(ProtocolError):
    """A result that failed its checks under ``strict`` (the reason names the check)."""


def block_checks(
    blocks, complete: bool, min_blocks: int = MIN_BLOCKS, max_dropped_share: float = MAX_DROPPED_SHARE
) -> tuple[dict[str, Any], list[str]]:
    """The checks on what a protocol left of a text: ({thresholds, measured}, [reasons it is flagged]).

    ``blocks`` before any ``max_blocks`` subset; ``complete``: every row was cut (else the block count is
    only known to exceed the subset, and is not checked)."""
    share = blocks.tokens_dropped / blocks.stream_tokens if blocks.stream_tokens else 1.0
    flags = []
    if complete and len(blocks) < min_blocks:
        flags.append(
            f"only {len(blocks)} {blocks.protocol} blocks of {blocks.seq_len} tokens (fewer than the "
            f"{min_blocks} required, --min-blocks): the standard error over blocks is unreliable"
        )
    if share > max_dropped_share:
        flags.append(
            f"the {blocks.protocol} protocol drops {share:.0%} of the text's {blocks.stream_tokens:,} tokens "
            f"(the remainder shorter than a block; more than the {max_dropped_share:.0%} allowed, --max-dropped)"
        )
    checks = {
        "min_blocks": min_blocks,
        "max_dropped_share": max_dropped_share,
        "blocks": len(blocks) if complete else None,
        "dropped_share": share,
    }
    return checks, flags


def evaluate_benchmark(
    loaded,
    tok,
    bench: Benchmark,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    time_samples: int = 1,
    seed: int = 1234,
    batch_size: int = 16,
    split: str = "auto",
    data_dir: str | Path | None = None,
    source: str = "auto",
    hub_mirror: str | Path | None = None,
    max_blocks: int | None = None,
    max_lambada: int | None = None,
    lambada_acc: bool = True,
    precision: str = "auto",
    min_blocks: int = MIN_BLOCKS,
    max_dropped_share: float = MAX_DROPPED_SHARE,
    strict: bool = False,
    text=None,
    log=print,
) -> dict[str, Any]:
    """One benchmark's entry of ``zero_shot.json`` (see module docstring). ``text``: rows given directly
    (:func:`mdm.eval.text.load_text`) instead of loading ``bench``. A result that fails
    :func:`block_checks` is flagged (``status``, ``flags``), or with ``strict`` refused (RefusedError)."""
    seq_len = loaded.cfg.model.seq_len
    if text is None:
        text = load_benchmark(bench, split=split, data_dir=data_dir, source=source, hub_mirror=hub_mirror)
    log(f"[eval] {bench.name} ({text.split}): {len(text.rows):,} rows from {text.source} [{text.release}]")
    docs, complete = _docs_for(text.docs, tok, seq_len, protocol, max_blocks)
    ids = tok.encode_batch(docs)
    blocks = make_blocks(ids, [utf8_len(d) for d in docs], seq_len, protocol, tok.eos_id, tok.bos_id)
    full_blocks = len(blocks) if complete else None
    checks, flags = block_checks(blocks, complete, min_blocks, max_dropped_share)
    if flags and strict:
        raise RefusedError(f"{bench.name}: refused: " + "; ".join(flags))
    for f in flags:
        log(f"[eval] warning: {bench.name}: {f}")
    if max_blocks is not None:
        blocks = blocks.subset(max_blocks)
    res = estimate_bound(
        loaded.objective,
        loaded.model,
        blocks.tokens,
        K=time_samples,
        seed=seed,
        batch_size=batch_size,
        nbytes=blocks.bytes,
        precision=precision,
    )
    entry: dict[str, Any] = {
        "benchmark": bench.name,
        "description": bench.description,
        "split": text.split,
        "source": text.source,
        "release": text.release,
        "detokenizer": bench.detokenizer,
        "protocol": protocol,
        "seq_len": seq_len,
        "seed": seed,
        "rows": len(text.rows),
        "stream_tokens": blocks.stream_tokens,
        "tokens_dropped": blocks.tokens_dropped,
        "blocks_available": full_blocks,
        "status": "flagged" if flags else "ok",
        "flags": flags,
        "checks": checks,
        **res.summary(),
    }
    if max_blocks is not None and (full_blocks is None or max_blocks < full_blocks):
        entry["subset"] = f"first {len(blocks)} blocks" + (f" of {full_blocks}" if full_blocks else "")
    if bench.lambada and lambada_acc:
        rows = text.rows if max_lambada is None else text.rows[:max_lambada]
        examples, truncated = lambada_examples(rows, tok, seq_len)
        try:
            acc = lambada_accuracy(
                loaded.objective,
                loaded.model,
                examples,
                batch_size=batch_size,
                K=time_samples,
                seed=seed,
                precision=precision,
            )
        except (NotImplementedError, TypeError, ValueError) as e:  # an objective without a usable denoiser
            acc = {"lambada_acc": None, "lambada_method": f"not computed: {type(e).__name__}: {e}"}
        acc["lambada_context_truncated"] = truncated
        entry.update(acc)
    return entry


def _docs_for(
    docs: list[str], tok, seq_len: int, protocol: str, max_blocks: int | None
) -> tuple[list[str], bool]:
    """With ``max_blocks``, the shortest prefix of the rows whose tokens fill ``max_blocks + 1`` blocks (so a
    quick evaluation does not tokenize a whole benchmark); else all rows. Returns (rows, all_rows_used)."""
    if max_blocks is None:
        return docs, True
    need = (max_blocks + 1) * seq_len
    have, n, step = 0, 0, 64
    while n < len(docs) and have < need:
        have += sum(len(x) + 1 for x in tok.encode_batch(docs[n : n + step]))
        n += step
    return docs[:n], n >= len(docs)


def evaluate_run(
    loaded,
    tok,
    benchmarks: str | list[str],
    *,
    write: bool = True,
    skip_missing: bool = False,
    texts: list | None = None,
    log=print,
    **kw: Any,
) -> dict[str, Any]:
    """Evaluate ``benchmarks`` and ``texts`` ((Benchmark, BenchmarkText) pairs of a user's own text,
    :func:`mdm.eval.text.load_text`) and (with ``write``) merge them into ``<run>/eval/zero_shot.json``.
    Results failing :func:`block_checks` are flagged, or with ``strict=True`` listed under ``refused``.

    A benchmark that cannot be loaded (missing file, offline Hub, too short) raises, or with
    ``skip_missing`` is reported under ``skipped`` with its reason while the others go on.
    """
    benches = [(b, None) for b in parse_benchmarks(benchmarks)] if benchmarks else []
    benches += list(texts or [])
    protocol = kw.get("protocol", DEFAULT_PROTOCOL)
    results, skipped, refused = {}, {}, {}
    for b, text in benches:
        try:
            results[b.name] = evaluate_benchmark(loaded, tok, b, log=log, text=text, **kw)
        except RefusedError as e:
            refused[b.name] = str(e)
            log(f"[eval] {e}")
        except (BenchmarkError, ProtocolError) as e:
            if text is not None:  # the user's own text: too short for one block, ... -> refused, named
                refused[b.name] = f"{b.name}: refused: {e}"
                log(f"[eval] {refused[b.name]}")
                continue
            if not skip_missing:
                raise
            skipped[b.name] = str(e)
            log(f"[eval] skipped {b.name}: {e}")
    report = {
        "run": str(loaded.run_dir) if loaded.run_dir else None,
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "objective": loaded.cfg.objective.name,
        "default_protocol": DEFAULT_PROTOCOL,
        "protocols": PROTOCOLS,
        "se_method": SE_METHOD,
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": results,
        "skipped": skipped,
        "refused": refused,
    }
    if write and loaded.run_dir is not None and results:
        path = Path(loaded.run_dir) / "eval" / RESULT_FILE
        report = merge_report(path, report)
        atomic_write_json(path, report)
        log(f"[eval] wrote {path}")
    if results:
        log(format_table(results, protocol))
    return report


def merge_report(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """Keep the other benchmarks' entries of an existing file (a corrupt file is replaced, with a warning)."""
    if not path.exists():
        return new
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        print(f"[eval] warning: {path} is not valid JSON; replacing it", file=sys.stderr)
        return new
    merged = dict(new)
    merged["results"] = {**old.get("results", {}), **new["results"]}
    return merged


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_table(results: dict[str, dict], protocol: str) -> str:
    """A plain-text table; ``±`` is one standard error."""
    head = (
        f"protocol: {protocol}"
        + (" (default)" if protocol == DEFAULT_PROTOCOL else f" (default: {DEFAULT_PROTOCOL})")
        + f" -- {PROTOCOLS[protocol]}\n"
        "± = one standard error (ratio estimator over blocks); PPL is an upper bound except for exact (AR) models\n"
    )
    cols = [
        "benchmark",
        "split",
        "tokens",
        "K",
        "nats/token",
        "PPL bound [95% CI]",
        "bits/byte",
        "LAMBADA acc",
        "check",
        "release",
    ]
    rows = []
    for name, r in results.items():
        ci = r.get("ppl_ci95")
        ppl = _fmt(r["ppl_bound"], ".2f") + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        acc = r.get("lambada_acc")
        acc_s = "-" if acc is None else f"{acc:.4f} ± {_fmt(r.get('lambada_acc_se'), '.4f')}"
        rows.append(
            [
                name,
                r["split"],
                f"{r['tokens_scored']:,}",
                "exact" if r["exact"] else str(r["time_samples"]),
                f"{r['nats_per_token']:.4f} ± {_fmt(r['se'], '.4f')}",
                ppl,
                f"{_fmt(r['bits_per_byte'], '.4f')} ± {_fmt(r['bits_per_byte_se'], '.4f')}",
                acc_s,
                "FLAGGED" if r.get("flags") else "ok",
                r["release"] + (f" ({r['subset']})" if r.get("subset") else ""),
            ]
        )
    notes = [f"! {name}: {f}" for name, r in results.items() for f in r.get("flags") or []]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return head + "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in rows), *notes])
