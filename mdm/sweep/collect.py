"""``results.csv``: one row per completed run, the input of ``python -m scaling fit``.

Columns: ``name,family,params,tokens,flops,loss`` then ``params_total,params_non_embedding,
val_ppl_bound,wall_s,budget,depth,d_model,steps,lr`` (+ ``unique_tokens,epochs`` when a run sets
``data.unique_tokens``: the subset in training tokens and tokens / it). ``params`` is the non-embedding count by default
(``--params total`` for Chinchilla's convention, ``--params compute`` for flops_per_token / 6, the size
for which C = 6ND is exactly the FLOPs spent, which tiny models with a large head need); ``flops`` is the compute actually spent (steps are
rounded up, so it is a little above the nominal isoFLOP ``budget``); ``loss`` is the validation loss in
nats/token. A companion ``results.json`` (same stem) says so. Both are written atomically.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from mdm.flops import FLOP_CONVENTION
from mdm.io import atomic_write_json, atomic_write_text
from mdm.rundir import git_sha
from mdm.sweep.plan import Plan
from mdm.sweep.spec import SweepError
from mdm.sweep.status import RunState, sweep_states

COLUMNS = [
    "name", "family", "params", "tokens", "flops", "loss",
    "params_total", "params_non_embedding", "val_ppl_bound", "wall_s",
    "budget", "depth", "d_model", "steps", "lr",
]  # fmt: skip
UNIQUE_COLUMNS = ["unique_tokens", "epochs"]  # appended when a run sets data.unique_tokens
PARAM_CHOICES = {
    "non_embedding": "params_non_embedding",
    "total": "params_total",
    "compute": "params_compute",
}
_NEEDED = (
    "params_total",
    "params_non_embedding",
    "tokens",
    "flops",
    "val_loss",
    "val_ppl_bound",
    "wall_s",
    "steps",
)


def collect(
    plan: Plan, out: str | Path, params: str = "non_embedding"
) -> tuple[list[dict[str, Any]], list[RunState]]:
    """Write ``out`` (CSV) and its companion JSON; return (rows, states of the runs not collected)."""
    if params not in PARAM_CHOICES:
        raise SweepError(f"--params {params!r} is not valid; choose one of: {', '.join(PARAM_CHOICES)}")
    out = Path(out)
    if out.suffix != ".csv":
        raise SweepError(f"results file must end in .csv (got {out})")
    states = sweep_states(plan)
    corrupt = [s for s in states if s.status == "corrupt"]
    if corrupt:
        raise SweepError("cannot collect: " + "; ".join(s.error or s.name for s in corrupt))
    rows, missing = [], []
    for run, st in zip(plan.runs, states):
        if st.status != "completed":
            missing.append(st)
            continue
        s = st.summary or {}
        absent = [
            k for k in _NEEDED + (("flops_per_token",) if params == "compute" else ()) if s.get(k) is None
        ]
        if absent:
            raise SweepError(f"{run.run_dir.summary}: completed summary lacks {absent}")
        if not math.isfinite(float(s["val_loss"])):
            raise SweepError(f"{run.run_dir.summary}: val_loss is {s['val_loss']}")
        rows.append(
            {
                "name": run.name,
                "family": s.get("family") or run.family,
                "params": s["flops_per_token"] / 6.0 if params == "compute" else s[PARAM_CHOICES[params]],
                "tokens": s["tokens"],
                "flops": s["flops"],
                "loss": s["val_loss"],
                "params_total": s["params_total"],
                "params_non_embedding": s["params_non_embedding"],
                "val_ppl_bound": s["val_ppl_bound"],
                "wall_s": s["wall_s"],
                "budget": run.budget,
                "depth": s.get("depth", run.depth),
                "d_model": s.get("d_model", run.d_model),
                "steps": s["steps"],
                "lr": run.lr,
                # data-constrained runs (mdm/data/unique.py): the subset in training tokens, tokens / it
                "unique_tokens": run.unique_tokens or "",
                "epochs": s["tokens"] / run.unique_tokens if run.unique_tokens else "",
            }
        )
    if not rows:
        raise SweepError(f"no completed runs to collect in {plan.spec.runs_dir} ({len(states)} planned)")
    constrained = any(r.unique_tokens for r in plan.runs)
    columns = [c for c in COLUMNS if c != "budget" or plan.spec.isoflop is not None]
    columns += UNIQUE_COLUMNS if constrained else []
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
    atomic_write_json(out.with_suffix(".json"), describe(plan, params, len(rows)))
    atomic_write_text(out, buf.getvalue())
    return rows, missing


def describe(plan: Plan, params: str, n_rows: int) -> dict[str, Any]:
    spec = plan.spec
    return {
        "params": PARAM_CHOICES[params],
        "params_meaning": {
            "non_embedding": "non-embedding parameters: total minus the token embedding and an untied output head "
            "(Kaplan et al. 2020)",
            "total": "all trainable parameters, tied head counted once (Hoffmann et al. 2022)",
            "compute": "compute-equivalent parameters: training FLOPs per token / 6 (the N for which C = 6*N*D is "
            "exactly the FLOPs spent: matmul weights incl. the output head, plus attention; see flop_convention)",
        }[params],
        "flops": "training FLOPs spent: steps * tokens_per_step * flops_per_token",
        "flop_convention": FLOP_CONVENTION,
        "tokens": "training tokens: steps * train.global_batch * model.seq_len",
        "loss": "validation loss in nats/token (EMA weights; a Monte Carlo estimate of the NLL bound for diffusion objectives, exact NLL for AR)",
        "budget": "nominal isoFLOP budget C of the sweep spec (runs of one budget share it)",
        "unique_tokens": "data-constrained runs: the training subset (data.unique_tokens' first blocks) in "
        "training tokens, rows x seq_len; empty = the whole split",
        "epochs": "tokens / unique_tokens (passes over the subset)",
        "lr_rule": spec.isoflop.lr_rule if spec.isoflop else None,
        "sweep": spec.name,
        "spec": spec.path,
        "runs_dir": str(spec.runs_dir),
        "n_rows": n_rows,
        "git_sha": git_sha(),
    }
