"""Run a snippet in a fresh interpreter (nothing imported yet): what tests of import hygiene need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_json(code: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 300):
    """Run ``code`` with ``python -c`` (``env`` added to this process's environment); the JSON its last
    line of output prints. A failing snippet fails the test with its stderr."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
