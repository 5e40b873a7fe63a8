"""Pure: the load generators' answers folded into the run's numbers (tested in
``tests/unit/test_bench_scale_plan.py``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from bench.scale.plan import is_retried, summary_ms

Json = dict[str, Any]
Phases = Sequence[tuple[str, float, float]]  # (name, from, to) on the monotonic clock


def errors(answers: Sequence[Json], phases: Phases = ()) -> Json:
    """Every error kind summed over the load generators, split into retried
    attempts (expected around the kill) and errors (the target is 0); with
    ``phases`` ((name, from, to) on the machine's monotonic clock), the errors
    counted per phase they happened in (``later`` after the last one)."""
    total: Counter[str] = Counter()
    for a in answers:
        total.update(a.get("errors", {}))
    retried = {k: v for k, v in total.items() if is_retried(k)}
    hard = {k: v for k, v in total.items() if not is_retried(k)}
    examples = [e for a in answers for e in a.get("examples", [])][:20]
    out: Json = {
        "errors": sum(hard.values()),
        "by_kind": dict(sorted(hard.items())),
        "retried_attempts": dict(sorted(retried.items())),
        "examples": examples,
    }
    if phases:
        out["by_phase"] = errors_by_phase(answers, phases)
    return out


def by_phase(stamped: Iterable[tuple[float, Any]], phases: Phases) -> dict[str, list[Any]]:
    """The values of (time, value) pairs grouped by the phase their time falls in
    (``later`` after the last one), in the run's order of phases."""
    found: dict[str, list[Any]] = {}
    for at, value in stamped:
        name = next((n for n, lo, hi in phases if lo <= at < hi), "later")
        found.setdefault(name, []).append(value)
    order = [n for n, _, _ in phases] + ["later"]
    return {n: found[n] for n in order if n in found}


def errors_by_phase(answers: Sequence[Json], phases: Phases) -> Json:
    """Per phase, the error kinds that happened in it (from the load generators'
    ``error_at``: kind and time of each error, retried attempts left out)."""
    stamped = ((at, kind) for a in answers for kind, at in a.get("error_at", []))
    grouped = by_phase(stamped, phases)
    return {n: dict(sorted(Counter(kinds).items())) for n, kinds in grouped.items()}


def loop_lags(answers: Sequence[Json], phases: Phases) -> Json:
    """Per phase, how late the load generators' own event loops were: the
    count of late ticks (>= 0.2 s) and the longest, in seconds. A long one
    means the instrument, not a server, made the latency of that phase."""
    stamped = ((at, late) for a in answers for at, late in a.get("loop_lags", []))
    return {
        n: {"late_ticks": len(lates), "longest_s": round(max(lates), 3)}
        for n, lates in by_phase(stamped, phases).items()
    }


def window(samples: Sequence[Sequence[float]], lo: float, hi: float) -> list[float]:
    """The latencies (ms) of the (sent at, ms) samples sent in [lo, hi)."""
    return [ms for at, ms in samples if lo <= at < hi]


def latencies(answers: Sequence[Json], key: str, lo: float, hi: float) -> Json:
    return summary_ms([ms for a in answers for ms in window(a.get(key, []), lo, hi)])


def latencies_by_window(
    answers: Sequence[Json], key: str, lo: float, hi: float, width: float = 10.0
) -> list[Json]:
    """The latencies of [lo, hi) per ``width`` seconds (by send time), each with
    its offset from ``lo``: a tail spread evenly over the windows is the
    machine's contention, one concentrated in a few is periodic work."""
    out = []
    start = lo
    while start < hi:
        end = min(hi, start + width)
        out.append({"from_s": round(start - lo, 1), **latencies(answers, key, start, end)})
        start = end
    return out


def closes(answers: Sequence[Json]) -> dict[str, int]:
    """Held sockets closed under their visitor, by message type and close code
    (after the kill: the victim's; before it: a gateway closed them, e.g. a
    heartbeat that was not answered in time)."""
    total: Counter[str] = Counter()
    for a in answers:
        total.update(a.get("closes", {}))
    return dict(total)


def latencies_flat(answers: Sequence[Json], key: str) -> Json:
    return summary_ms([ms for a in answers for ms in a.get(key, [])])


def failover(answers: Sequence[Json], killed_at: float, expected: int | None) -> Json:
    """From the kill to each lost visitor's resume: how many, how long, and the time
    until the last one (None when some never resumed)."""
    pairs = [(lost, resumed) for a in answers for lost, resumed in a.get("lost_resumed", [])]
    after_kill = [(lost, r) for lost, r in pairs if lost >= killed_at - 1.0]
    resumed = [r - killed_at for _, r in after_kill if r is not None]
    never = sum(1 for _, r in after_kill if r is None)
    return {
        "expected": expected,
        "lost": len(after_kill),
        "resumed": len(resumed),
        "never_resumed": never,
        "lost_before_kill": len(pairs) - len(after_kill),
        "all_resumed_s": round(max(resumed), 2) if resumed and not never else None,
        "resumed_after_kill_ms": summary_ms([s * 1000 for s in resumed]),
        "resumed_per_s": round(len(resumed) / max(resumed), 1) if resumed else None,
        "presses_applied_across_loss": sum(
            a.get("presses_applied_across_loss", 0) for a in answers
        ),
        "presses_resent": sum(a.get("presses_resent", 0) for a in answers),
        "starts_resent": sum(a.get("starts_resent", 0) for a in answers),
    }


def ramp(answers: Sequence[Json]) -> Json:
    began = min((a["ramp_began"] for a in answers), default=0.0)
    ended = max((a["ramp_ended"] for a in answers), default=0.0)
    opened = sum(a.get("opened", 0) for a in answers)
    complete = all(a["ramp_ended"] for a in answers)  # 0: still opening at the end
    seconds = ended - began if complete else None
    return {
        "opened": opened,
        "failed": sum(a.get("open_failed", 0) for a in answers),
        "complete": complete,
        "seconds": None if seconds is None else round(seconds, 1),
        "per_s": round(opened / seconds, 1) if seconds else None,
        "connect_to_first_message": summary_ms([ms for a in answers for ms in a["ramp_ms"]]),
    }


def per_socket_kib(rss: dict[str, int | None], held: dict[str, int]) -> dict[str, Json]:
    """Per process holding sockets: RSS total and per socket (KiB)."""
    out: dict[str, Json] = {}
    for name, sockets in held.items():
        kib = rss.get(name)
        out[name] = {
            "sockets": sockets,
            "rss_mib": None if kib is None else round(kib / 1024, 1),
            "kib_per_socket": None if kib is None or not sockets else round(kib / sockets, 2),
        }
    return out


def growth_kib(
    before: dict[str, int | None], after: dict[str, int | None], held: dict[str, int]
) -> dict[str, float | None]:
    """RSS added per socket (KiB) since before the sockets opened."""
    out: dict[str, float | None] = {}
    for name, sockets in held.items():
        b, a = before.get(name), after.get(name)
        out[name] = None if a is None or b is None or not sockets else round((a - b) / sockets, 2)
    return out
