"""Pure planning of a scale run: how many sockets each gateway and each load
generator holds, in which order a load generator opens them, the widget's
reconnect backoff, and the percentiles. No I/O here (tested in
``tests/unit/test_bench_scale_plan.py``).

Why the victim gateway gets a bigger share: every process here has a hard
open-files limit (20,000 on the reference box, not raisable without
``CAP_SYS_RESOURCE``). The gateway that is killed should hold about a fifth of the
sockets, and the survivors must still fit every socket after the kill; with an even
spread either the victim holds too few or the survivors overflow. So the victim
holds ``victim_share`` of the sockets (capped by the per-process budget) and the
others share the rest evenly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

# Kinds that are expected consequences of the kill, not errors of the system: a
# reconnect attempt that failed and was retried (the widget retries too). A visitor
# that gave up, a resume that lost anything, an error frame, a timeout are errors.
RETRIED = ("reconnect_attempt_failed:", "open_attempt_failed:")


def is_retried(kind: str) -> bool:
    """Whether an error kind is a retried attempt rather than an error."""
    return kind.startswith(RETRIED)


BACKOFF_BASE_S = 0.5  # gateway/static/widget.js: BACKOFF_BASE_MS
BACKOFF_MAX_S = 15.0  # BACKOFF_MAX_MS


class PlanError(ValueError):
    """The run cannot fit the per-process socket budget: say what to change."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Sockets per gateway (``gateways[victim]`` is the one killed) and, per load
    generator, sockets per gateway (``loadgens[j][g]``)."""

    gateways: tuple[int, ...]
    loadgens: tuple[tuple[int, ...], ...]
    victim: int
    budget: int  # sockets one process may hold

    @property
    def total(self) -> int:
        return sum(self.gateways)

    @property
    def after_kill(self) -> int:
        """Sockets each survivor holds once the victim's are spread over them (the most)."""
        survivors = len(self.gateways) - 1
        return max(self.gateways[g] for g in range(len(self.gateways)) if g != self.victim) + (
            math.ceil(self.gateways[self.victim] / survivors) if survivors else 0
        )


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole parts (the larger ones first)."""
    if parts <= 0:
        raise PlanError("need at least one part")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def gateway_counts(
    sockets: int, gateways: int, budget: int, victim_share: float = 0.2, victim: int = 0
) -> list[int]:
    """Sockets per gateway: the victim ``victim_share`` of them (at most ``budget``),
    the others the rest evenly. Raises :class:`PlanError` when a gateway, before or
    after the kill, would hold more than ``budget``."""
    if sockets < 1 or gateways < 2:
        raise PlanError("need at least 1 socket and 2 gateways")
    held = min(round(sockets * victim_share), budget)
    rest = spread(sockets - held, gateways - 1)
    worst = rest[0] + math.ceil(held / (gateways - 1))
    if rest[0] > budget or worst > budget:
        raise PlanError(
            f"{sockets} sockets on {gateways} gateways: a survivor would hold {worst} "
            f"after the kill, over the budget of {budget} per process; add gateways"
        )
    return [*rest[:victim], held, *rest[victim:]]


def plan(
    sockets: int,
    gateways: int,
    loadgens: int,
    budget: int,
    victim_share: float = 0.2,
    victim: int = 0,
) -> Plan:
    """Where each socket lives (see :func:`gateway_counts`); raises :class:`PlanError`
    when a load generator would hold more than ``budget`` sockets."""
    if loadgens < 1:
        raise PlanError("need at least 1 load generator")
    counts = gateway_counts(sockets, gateways, budget, victim_share, victim)
    per_loadgen = [spread(c, loadgens) for c in counts]
    matrix = tuple(tuple(per_loadgen[g][j] for g in range(gateways)) for j in range(loadgens))
    if max(sum(row) for row in matrix) > budget:
        raise PlanError(
            f"{sockets} sockets on {loadgens} load generators is over {budget} each; "
            "add load generators"
        )
    return Plan(tuple(counts), matrix, victim, budget)


def interleave(counts: Sequence[int]) -> list[int]:
    """The gateway of each socket, in opening order: every gateway in turn while it
    has sockets left, so any prefix (the active visitors are a prefix) is spread
    over all gateways."""
    left = list(counts)
    out: list[int] = []
    while any(left):
        for g, n in enumerate(left):
            if n:
                out.append(g)
                left[g] -= 1
    return out


def reconnect_target(index: int, attempt: int, gateways: int, lost: int) -> int:
    """The gateway a reconnect goes to: as a load balancer that retries another
    upstream, never the one the socket was lost on, rotated by attempt."""
    others = [g for g in range(gateways) if g != lost]
    return others[(index + attempt) % len(others)]


def backoff_s(attempt: int, rng: random.Random) -> float:
    """The widget's reconnect delay: full jitter under 0.5 s doubling to 15 s."""
    cap: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * float(2 ** min(attempt, 10)))
    return rng.random() * cap


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary_ms(samples_ms: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p90, p99, max (ms, 2 decimals) of unsorted samples."""
    ordered = sorted(samples_ms)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "count": len(ordered),
        "p50_ms": r(percentile(ordered, 0.50)),
        "p90_ms": r(percentile(ordered, 0.90)),
        "p99_ms": r(percentile(ordered, 0.99)),
        "max_ms": r(ordered[-1] if ordered else None),
    }


def default_loadgens(sockets: int, per_loadgen: int) -> int:
    """At least two load generators, each under ``per_loadgen`` sockets."""
    return max(2, math.ceil(sockets / per_loadgen))


def default_gateways(sockets: int, budget: int, victim_share: float = 0.2) -> int:
    """The fewest gateways (at least 3) whose survivors fit every socket after the kill."""
    for gateways in range(3, 256):
        try:
            gateway_counts(sockets, gateways, budget, victim_share)
        except PlanError:
            continue
        return gateways
    raise PlanError(f"{sockets} sockets do not fit {budget} per gateway")
