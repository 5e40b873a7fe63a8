"""What a plan hands a store: the write set, its counter increments, and the
keys and layout of the counters they add to.

The pure projection (:func:`projector.plan.plan`) makes write sets; the stores
apply them and the read API reads the counters back by the same keys. This is
the contract between them, kept apart from the planner so that a store or an
endpoint imports the shape of what it is handed, not how it was computed.

Tenants: every funnel and every daily rollup of a flow is kept twice, for all
sites together (``funnel_key(flow, version)``, read by the admin) and for the
conversation's own site (``funnel_key(flow, version, site)``, the only one a
site's key reads): one site never sees another's traffic on a shared flow id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

from projector.views import LeadView


class Increment(NamedTuple):
    """``HINCRBY key field delta``; ``key`` is relative to the namespace.

    A NamedTuple, not a dataclass: tens of them are made per write set, and a
    frozen dataclass's ``__init__`` was the projector's largest single cost."""

    key: str
    field: str
    delta: int = 1


@dataclass(frozen=True, slots=True)
class WriteSet:
    """Everything one conversation's new events change, applied atomically.

    ``base_seq`` is the view's ``last_seq`` the set was planned on (0 for a
    conversation the store does not hold yet); ``new_seq`` the last event's."""

    conversation_id: str
    base_seq: int
    new_seq: int
    fields: dict[str, str]
    transcript: tuple[bytes, ...]
    lead: LeadView | None
    increments: tuple[Increment, ...]
    site_id: str
    transcript_seqs: tuple[int, ...] = ()  # each transcript entry's seq, when known


LAYOUT_VERSION = 2
"""The layout of the counters a plan writes. 1: funnels and daily rollups of a
flow for all sites together only; 2: also per site. A namespace filled with an
older layout is rebuilt from the log (docs/projector.md, *Upgrading*)."""


def funnel_key(flow_id: str, flow_version: int, site_id: str | None = None) -> str:
    """The funnel of a flow version: of all sites together (``site_id`` None),
    or of one site's conversations only."""
    key = f"funnel:{flow_id}:{flow_version}"
    return key if site_id is None else f"site:{site_id}:{key}"


def daily_flow_key(flow_id: str, day: str, site_id: str | None = None) -> str:
    """A flow's daily rollup: of all sites together, or of one site only. (Flow
    ids have no ``:``, so a site id cannot make two keys collide.)"""
    key = f"daily:flow:{flow_id}:{day}"
    return key if site_id is None else f"site:{site_id}:{key}"


def daily_site_key(site_id: str, day: str) -> str:
    return f"daily:site:{site_id}:{day}"


def utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))
