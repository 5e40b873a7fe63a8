"""A flow's durable timers (flow format v2, ``timers:``): an idle nudge and an
abandonment time.

```yaml
timers:
  idle:                 # a visitor who does not answer the current question...
    after: 60           # ...for this many seconds
    message: "Still there? Take your time."   # is nudged with this message,
    to: still-there     # and/or moved to this node (at least one of the two)
  abandon_after: 1800   # no visitor command for this long: ConversationAbandoned
```

The idle nudge fires at most once per visit of a waiting node (a question, an
input or a lead form); abandonment once per spell of inactivity. Both are
only declared here: when they are due is a function of the conversation's
state (:mod:`services.conversation.timers`), and firing one is a command
whose events say what happened, so a timer needs no database of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MIN_IDLE_SECONDS = 5.0
MAX_IDLE_SECONDS = 86_400.0
MIN_ABANDON_SECONDS = 10.0
MAX_ABANDON_SECONDS = 30 * 86_400.0
MAX_NUDGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class IdleTimer:
    """After ``after`` seconds without an answer: say ``message`` (a template;
    empty: nothing) and/or go to node ``to`` (empty: stay)."""

    after: float
    message: str = ""
    to: str = ""


@dataclass(frozen=True, slots=True)
class FlowTimers:
    idle: IdleTimer | None = None
    abandon_after: float | None = None

    @property
    def any(self) -> bool:
        return self.idle is not None or self.abandon_after is not None


NO_TIMERS = FlowTimers()


def _as_is(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


def parse_timers(raw: Any, texts: Callable[[Any, str], str] = _as_is) -> FlowTimers:
    """The ``timers`` of a document that passed the JSON Schema (absent: none);
    ``texts`` picks the nudge message's locale when it is given per locale."""
    if not isinstance(raw, Mapping):
        return NO_TIMERS
    idle = raw.get("idle")
    abandon = raw.get("abandon_after")
    return FlowTimers(
        idle=IdleTimer(
            after=float(idle["after"]),
            message=texts(idle.get("message"), ""),
            to=str(idle.get("to", "")),
        )
        if isinstance(idle, Mapping)
        else None,
        abandon_after=None if abandon is None else float(abandon),
    )


def timer_problems(timers: FlowTimers, nodes: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, problem) of every semantic error of ``timers`` (the JSON Schema
    has checked the types and ranges): a fallback node must exist, a nudge must
    say or do something and come before abandonment. (Its message's templates
    and links are checked like any text's, in every locale: flow_graph.)"""
    idle = timers.idle
    if idle is None:
        return
    if not idle.message and not idle.to:
        yield "timers.idle", "an idle nudge needs a message, a node to go to (to), or both"
    if idle.to and idle.to not in nodes:
        yield "timers.idle.to", f"unknown node {idle.to!r}"
    if timers.abandon_after is not None and idle.after >= timers.abandon_after:
        yield (
            "timers.idle.after",
            f"the nudge ({idle.after:g} s) must come before abandonment "
            f"({timers.abandon_after:g} s)",
        )
