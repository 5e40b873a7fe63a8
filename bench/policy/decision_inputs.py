"""What ``python -m bench.policy.decision`` times: its configuration, the
synthetic posterior snapshots and the decision points given to the policies.

Contract: everything here is drawn from the two generators a run is seeded with
(``numpy`` for the posteriors, ``random`` for the visitors and the decision
points), in the order :func:`bench.policy.decision_timing.run` calls it, so one
seed gives the same snapshots (their creation time aside) and the same decision
points on every run; only the timings differ.

Why synthetic: a decision's cost depends on the snapshot's shape (points, their
k, draws, features, answers and pairs) and on the visitors' contexts (which cell
a decision falls in), not on what a fit learnt, so the snapshots are shaped like
a fit's (a baseline near 10% per edge, slopes of a few tenths) and the contexts
cover what production sees: every device, UTM variants, locales, and time zones
with half- and quarter-hour offsets, an empty and an invalid one, at times
spread over a year so that DST changes are crossed.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from policy.features import FEATURE_NAMES, PAIR_NAMES
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "policy_decision.json"
FLOW_ID = "bench-flow"
FLOW_VERSION = 3
POINT_KS = (2, 3, 4, 2, 3, 4)
ANSWER_QUESTIONS, ANSWER_BUTTONS, ANSWER_SHARES = 3, 3, (0.6, 0.3, 0.1)
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

Device = Literal["desktop", "mobile", "tablet", "unknown"]
DEVICES: tuple[Device, ...] = ("desktop", "mobile", "tablet", "unknown")
UTM = (  # (utm_source, utm_medium, referrer)
    ("", "", ""),
    ("", "", "https://news.example.org/article"),
    ("google", "organic", "https://www.google.com/"),
    ("google", "cpc", "https://www.google.com/"),
    ("bing", "", "https://www.bing.com/"),
    ("facebook", "paid_social", ""),
    ("instagram", "social", "https://l.instagram.com/"),
    ("LinkedIn", "Social", ""),
    ("newsletter", "email", ""),
    ("partner-site", "referral", "https://partner.example.com/"),
)
LOCALES = ("en", "en-US", "en-GB", "de-DE", "fr-FR", "es", "pt-BR", "ja-JP", "EN-au")
TIME_ZONES = (
    "UTC",
    "",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Not/AZone",
)


@dataclass(frozen=True, slots=True)
class Config:
    decisions: int = 100_000
    repeats: int = 5
    draws: int = 200
    contexts: int = 20_000
    min_exploration: float = 0.05
    holdout: float = 0.05
    seed: int = 7
    out: Path = DEFAULT_OUT


def with_answers(snapshot: PolicySnapshot, rng: np.random.Generator) -> PolicySnapshot:
    """The snapshot with answer slopes of a few tenths for every earlier answer and
    pair slopes of a few tenths for every context interaction."""
    names = tuple(
        f"answer:a{j}=b{b}" for j in range(ANSWER_QUESTIONS) for b in range(ANSWER_BUTTONS)
    )
    points = {}
    for key, p in snapshot.points.items():
        n, k = p.base.shape
        slopes = rng.normal(0.0, 0.3, size=(k, len(names))) + rng.normal(
            0.0, 0.15, size=(n, k, len(names))
        )
        pairs = rng.normal(0.0, 0.3, size=(n, k, len(PAIR_NAMES)))
        points[key] = replace(
            p,
            answers=names,
            answer_slopes=slopes.astype(np.float32),
            pairs=PAIR_NAMES,
            pair_slopes=pairs.astype(np.float32),
        )
    return replace(snapshot, version=snapshot.version + "-answers", points=points)


def answered(rnd: random.Random, point: DecisionPoint) -> DecisionPoint:
    """``point`` with the earlier answers (and the press at the point, last)."""
    given = tuple(
        (f"a{j}", f"b{rnd.choices(range(ANSWER_BUTTONS), ANSWER_SHARES)[0]}")
        for j in range(ANSWER_QUESTIONS)
    )
    return replace(point, answers=(*given, (point.node_id, point.button_id)))


def build_snapshot(cfg: Config, rng: np.random.Generator, version: str) -> PolicySnapshot:
    """Posterior draws shaped like a fit's: a baseline logit near 10% per edge
    with a few tenths of spread, context slopes of a few tenths."""
    f = len(FEATURE_NAMES)
    points = []
    for i, k in enumerate(POINT_KS):
        edge_means = rng.normal(-2.2, 0.3, size=k)
        base = edge_means + rng.normal(0.0, 0.25, size=(cfg.draws, k))
        slope_means = rng.normal(0.0, 0.3, size=(k, f))
        slopes = slope_means + rng.normal(0.0, 0.15, size=(cfg.draws, k, f))
        points.append(
            PointPosterior(
                node_id=f"q{i + 1}",
                button_id="b",
                candidates=tuple(f"q{i + 1}-e{j}" for j in range(k)),
                base=base.astype(np.float32),
                slopes=slopes.astype(np.float32),
            )
        )
    return PolicySnapshot(
        flow_id=FLOW_ID,
        flow_version=FLOW_VERSION,
        version=version,
        created_at=time.time(),
        points={p.key: p for p in points},
        guardrails=Guardrails(min_exploration=cfg.min_exploration, holdout=cfg.holdout),
    )


def visitor_contexts(rnd: random.Random, n: int) -> list[VisitorContext]:
    out = []
    for i in range(n):
        source, medium, referrer = rnd.choice(UTM)
        out.append(
            VisitorContext(
                device=rnd.choice(DEVICES),
                referrer=referrer,
                utm_source=source,
                utm_medium=medium,
                utm_campaign=f"campaign-{i % 997}" if source else "",
                locale=rnd.choice(LOCALES),
                time_zone=rnd.choice(TIME_ZONES),
            )
        )
    return out


def decision_points(
    rnd: random.Random, n: int, snapshot: PolicySnapshot, contexts: Sequence[VisitorContext]
) -> list[DecisionPoint]:
    posteriors = list(snapshot.points.values())
    points = []
    for _ in range(n):
        p = rnd.choice(posteriors)
        points.append(
            DecisionPoint(
                conversation_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                command_seq=rnd.randint(2, 14),
                flow_id=snapshot.flow_id,
                flow_version=snapshot.flow_version,
                node_id=p.node_id,
                button_id=p.button_id,
                candidates=p.candidates,
                context=rnd.choice(contexts),
                at=YEAR_START + rnd.uniform(0.0, 365 * 86400.0),
            )
        )
    return points
