"""The decision path stays light: importing it must not import PyMC (or its stack).

Processors and the unit tier import ``policy.thompson``; PyMC takes seconds to
import and is only needed where fits run. A subprocess, so that what this
test session has already imported does not count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

HEAVY = ("pymc", "pytensor", "arviz")
LIGHT = ("policy.features", "policy.snapshot", "policy.rewards", "policy.thompson")
ROOT = Path(__file__).resolve().parents[2]


def test_the_decision_path_does_not_import_pymc() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in LIGHT)
        + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout) == []
