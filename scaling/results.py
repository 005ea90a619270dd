"""Reading sweep results: RESULTS.csv (+ its companion JSON) and run directories' histories.

RESULTS.csv (``mdm sweep collect``) has one row per run with columns ``params,tokens,loss`` and
optionally ``flops,family,name`` (more columns are kept, unused). A JSON file beside it with the
same stem (``results.csv`` → ``results.json``) says which parameter count and FLOP convention the
columns use; it is read when present and echoed into every output. Without a ``flops`` column
compute is C = 6·N·D, and outputs say so.

Run directories (for Approach 1) hold ``summary.json`` (params_non_embedding, params_total,
flops_per_token, …) and ``metrics.jsonl`` (one JSON object per logged step: step, tokens, loss, …).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ScalingInputError

REQUIRED = ("params", "tokens", "loss")
NUMERIC_OPTIONAL = ("flops",)
DEFAULT_FAMILY = "all"


@dataclass
class Results:
    """Validated results: ``df`` has params, tokens, loss, flops (C), family, name columns."""

    df: pd.DataFrame
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the companion JSON, verbatim
    compute: str = "C = 6*N*D (no flops column)"  # how df.flops was obtained

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(self.df["family"].tolist()))

    def family(self, name: str) -> pd.DataFrame:
        if name not in self.families:
            raise ScalingInputError(
                f"family '{name}' not in {self.source}; families present: {self.families}"
            )
        return self.df[self.df["family"] == name].reset_index(drop=True)

    @property
    def source(self) -> str:
        return self.path or "results"

    def describe(self) -> dict[str, Any]:
        """What the outputs echo about the input: file, rows, families, conventions."""
        return {
            "path": self.path,
            "n_rows": int(len(self.df)),
            "families": self.families,
            "compute": self.compute,
            "conventions": self.meta,
        }


def companion_json_path(csv_path: str | os.PathLike) -> Path:
    """results.csv → results.json (same directory, same stem)."""
    p = Path(csv_path)
    return p.with_suffix(".json")


def load_results(path: str | os.PathLike, families: Sequence[str] | None = None) -> Results:
    """Read and validate RESULTS.csv (and its companion JSON when present).

    Raises ScalingInputError naming the file and the bad column/rows for: a missing file, missing
    required columns, non-numeric values, NaN/inf, non-positive values, unknown families.
    """
    p = Path(path)
    if not p.is_file():
        raise ScalingInputError(f"results file not found: {p}")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ScalingInputError(f"{p}: cannot parse as CSV ({e})") from e
    meta: dict[str, Any] = {}
    jp = companion_json_path(p)
    if jp.is_file():
        try:
            meta = json.loads(jp.read_text())
        except json.JSONDecodeError as e:
            raise ScalingInputError(f"{jp}: companion JSON is not valid JSON ({e})") from e
        if not isinstance(meta, dict):
            raise ScalingInputError(f"{jp}: companion JSON must be an object, got {type(meta).__name__}")
    res = validate(df, source=str(p), meta=meta)
    if families:
        res = select_families(res, families)
    return res


def validate(df: pd.DataFrame, source: str = "results", meta: dict[str, Any] | None = None) -> Results:
    """Check a results DataFrame and return the normalised :class:`Results` (a copy)."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ScalingInputError(
            f"{source}: missing required column(s) {missing}; have {list(df.columns)} "
            f"(RESULTS.csv needs params,tokens,loss and may have flops,family,name)"
        )
    if len(df) == 0:
        raise ScalingInputError(f"{source}: no rows")
    df = df.copy()
    if "name" not in df.columns:
        df["name"] = [f"row{i}" for i in range(len(df))]
    if "family" not in df.columns:
        df["family"] = DEFAULT_FAMILY
    df["family"] = df["family"].astype(str)
    df["name"] = df["name"].astype(str)
    cols = list(REQUIRED) + [c for c in NUMERIC_OPTIONAL if c in df.columns]
    for c in cols:
        num = pd.to_numeric(df[c], errors="coerce")
        bad_type = num.isna() & df[c].notna()
        if bad_type.any():
            rows = _rows(df, bad_type)
            raise ScalingInputError(f"{source}: column '{c}' has non-numeric values at {rows}")
        vals = num.to_numpy(dtype=np.float64)
        nan = ~np.isfinite(vals)
        if nan.any():
            raise ScalingInputError(f"{source}: column '{c}' has NaN/inf at {_rows(df, nan)}")
        nonpos = vals <= 0
        if nonpos.any():
            raise ScalingInputError(
                f"{source}: column '{c}' must be > 0; non-positive at {_rows(df, nonpos)}"
            )
        df[c] = vals
    compute = "C = 6*N*D (no flops column)"
    if "flops" in df.columns:
        m = meta or {}
        conv = m.get("flop_convention") or m.get("flops_convention") or m.get("flops")
        compute = "flops column" + (f" ({conv})" if conv else "")
    else:
        df["flops"] = 6.0 * df["params"] * df["tokens"]
    return Results(df=df.reset_index(drop=True), path=source, meta=dict(meta or {}), compute=compute)


def select_families(res: Results, families: Sequence[str]) -> Results:
    """Keep (and order) the named families; error listing the available ones if one is absent."""
    absent = [f for f in families if f not in res.families]
    if absent:
        raise ScalingInputError(
            f"{res.source}: family/families {absent} not found; families present: {res.families}"
        )
    df = pd.concat([res.df[res.df["family"] == f] for f in families], ignore_index=True)
    return Results(df=df, path=res.path, meta=res.meta, compute=res.compute)


def _rows(df: pd.DataFrame, mask: Iterable[bool]) -> str:
    idx = np.flatnonzero(np.asarray(list(mask), dtype=bool))
    shown = [f"row {i + 2} (name={df['name'].iloc[i]})" for i in idx[:5]]  # +2: header line, 1-based
    more = f" and {len(idx) - 5} more" if len(idx) > 5 else ""
    return ", ".join(shown) + more


# --- budgets (for Approach 2) -------------------------------------------------------------------
def group_budgets(flops: np.ndarray, rtol: float = 0.25) -> np.ndarray:
    """Integer budget labels: runs whose C differ by less than a factor (1 + rtol) from their
    neighbour in sorted order share a budget (sweeps round steps, so C is only nominally equal)."""
    flops = np.asarray(flops, dtype=np.float64)
    order = np.argsort(flops)
    lc = np.log(flops[order])
    new = np.concatenate([[True], np.diff(lc) > np.log1p(rtol)])
    labels_sorted = np.cumsum(new) - 1
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


PARAMS_COMPUTE = "params_compute"  # flops_per_token / 6: the N for which C = 6·N·D holds exactly


# --- run directories (for Approach 1) -----------------------------------------------------------
def load_run_histories(
    run_dirs: Sequence[str | os.PathLike],
    *,
    params_key: str = "params_non_embedding",
    compute: str = "6nd",
    loss_key: str = "loss",
) -> pd.DataFrame:
    """Training curves from run directories, long format: name, params, tokens, flops, loss, step, lr.

    ``params_key``: which summary.json count is N (params_non_embedding, params_total, or
    params_compute = flops_per_token / 6, the compute-equivalent size for which 6·N·D is the FLOPs).
    ``compute``: "6nd" (C = 6·N·tokens) or "summary" (C = flops_per_token·tokens from summary.json).
    Rows of metrics.jsonl without ``tokens`` or ``loss_key`` (e.g. validation-only rows) are skipped.
    """
    if compute not in ("6nd", "summary"):
        raise ScalingInputError(f"compute must be '6nd' or 'summary', got '{compute}'")
    if not run_dirs:
        raise ScalingInputError("no run directories given")
    frames = []
    for rd in run_dirs:
        rd = Path(rd)
        sp, mp = rd / "summary.json", rd / "metrics.jsonl"
        for f in (sp, mp):
            if not f.is_file():
                raise ScalingInputError(f"run directory {rd}: missing {f.name}")
        try:
            summary = json.loads(sp.read_text())
        except json.JSONDecodeError as e:
            raise ScalingInputError(f"{sp}: not valid JSON ({e})") from e
        if params_key == PARAMS_COMPUTE and "flops_per_token" in summary:
            summary[PARAMS_COMPUTE] = float(summary["flops_per_token"]) / 6.0
        if params_key not in summary:
            raise ScalingInputError(f"{sp}: missing key '{params_key}' (have {sorted(summary)})")
        n = float(summary[params_key])
        if not (np.isfinite(n) and n > 0):
            raise ScalingInputError(
                f"{sp}: '{params_key}' must be a positive number, got {summary[params_key]!r}"
            )
        fpt = 6.0 * n
        if compute == "summary":
            if "flops_per_token" not in summary:
                raise ScalingInputError(f"{sp}: missing key 'flops_per_token' (needed for compute='summary')")
            fpt = float(summary["flops_per_token"])
        steps, toks, losses, lrs = [], [], [], []
        with mp.open() as fh:
            for ln, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ScalingInputError(f"{mp}: line {ln} is not valid JSON ({e})") from e
                if row.get("tokens") is None or row.get(loss_key) is None:
                    continue
                steps.append(row.get("step", ln))
                toks.append(float(row["tokens"]))
                losses.append(float(row[loss_key]))
                lrs.append(float(row["lr"]) if isinstance(row.get("lr"), (int, float)) else np.nan)
        if not toks:
            raise ScalingInputError(f"{mp}: no rows with both 'tokens' and '{loss_key}'")
        t = np.asarray(toks)
        frames.append(
            pd.DataFrame(
                {
                    "name": summary.get(
                        "run_name", summary.get("name", rd.name)
                    ),  # mdm train writes run_name
                    "family": summary.get("family", summary.get("objective", DEFAULT_FAMILY)),
                    "params": n,
                    "tokens": t,
                    "flops": fpt * t,
                    "loss": np.asarray(losses),
                    "step": steps,
                    "lr": np.asarray(
                        lrs
                    ),  # NaN where a row has none (Approach 1 then skips its schedule check)
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
