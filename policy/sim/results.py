"""A simulation's JSON results, with the code and the machine that produced them.

:func:`to_json`: the configuration, the commit and hashes of the policy modules
(:func:`code_fingerprint`), every arm's leads, the metrics of
:mod:`policy.sim.report`, diagnostics of every fit and the cumulative curves.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from policy.sim.report import metrics, rows
from policy.sim.runner import ARMS, SimResult


def to_json(result: SimResult, command: str) -> bytes:
    doc = {
        "world": result.world,
        "command": command,
        "config": asdict(result.config),
        "code": code_fingerprint(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "seconds": result.seconds,
        "fit_seconds": result.fit_seconds,
        "between_fits": result.config.between_fits,
        # publications between fits (conjugate updates or online posteriors)
        "conjugate_updates": result.conjugate_updates,
        "conjugate_seconds": result.conjugate_seconds,
        "learn_seconds": result.learn_seconds,
        "changes_detected": [list(c) for c in result.changes],
        "pair_points": result.pair_points,
        "table": rows(result),
        **metrics(result),
        "population": {
            "mix": result.mix,
            "decision_points_met": result.decisions_met,
            "oracle_best_edges": result.best_edges,
            "beta_bernoulli_keys": result.keys,
        },
        "fits": [
            {
                "at_conversation": f.at_conversation,
                "version": f.version,
                "seconds": f.seconds,
                "installed": f.installed,
                "reason": f.reason,
                "fallback": f.fallback,
                "verdict": f.verdict,
                "diagnostics": f.diagnostics,
            }
            for f in result.fits
        ],
        "series": {
            "conversations": result.series_at,
            **{
                name: {
                    "leads": result.arms[name].leads_series,
                    "expected_leads": [round(x, 3) for x in result.arms[name].expected_series],
                }
                for name in ARMS
            },
        },
    }
    options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(doc, option=options, default=_jsonable)


def code_fingerprint() -> dict[str, str]:
    """The git commit and the SHA-256 of the policy modules the run used (they may
    have uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    out: dict[str, str] = {}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        out["git_head"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["git_head"] = "unknown"
    for name in (
        "model.py",
        "fit_design.py",
        "conjugate.py",
        "thompson.py",
        "decision_draws.py",
        "winners.py",
        "point_policy.py",
        "features.py",
        "rewards.py",
        "reward_conversations.py",
        "reward_counts.py",
        "fitting.py",
        "fit_request.py",
        "online.py",
        "online_config.py",
        "relevance.py",
        "laplace.py",
        "change_detection.py",
        "online_change.py",
        "online_seeding.py",
        "online_publishing.py",
        "pair_design.py",
    ):
        path = root / "policy" / name
        if path.exists():
            out[f"policy/{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
