"""A streaming fold of the event log into one flow's funnel statistics.

Events arrive in batches, each conversation's in seq order but conversations
interleaved (as :func:`projector.export.source.iter_events` yields them). The
fold keeps only a compact state per *open* conversation (its node path, a few
times and its segment); a conversation is summed into the per-version counters
when it completes, or at :meth:`FunnelFold.result` if it never does. Events are
never kept, so a log of a million events needs memory for the conversations,
not for the events.

The funnel counts follow :mod:`projector.plan` exactly (the read model's
funnel): each conversation counts once per node and per edge however often it
loops; an edge is a pair of consecutive ``NodeEntered``; ``left:N`` counts the
conversations that entered some node after N; ``converted`` counts those that
captured a lead, before or after the node; an event at or below a
conversation's last seq is a duplicate and changes nothing; events of a
conversation whose ``ConversationStarted`` was not seen are ignored.

Going back (``WentBack``) is no edge: the node the visitor went back from counts
as left, the re-opened node is entered again from nowhere (a break in the
path), ``went_back`` counts the conversations per re-opened node, the withdrawn
presses leave ``buttons`` (each conversation counts for the answer it kept) and
a withdrawn decision counts as a conversation without a lead (as the policy's
rewards count it, :mod:`policy.reward_conversations`).
"""

from __future__ import annotations

import itertools
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationAbandoned,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
    VisitorNudged,
    WentBack,
)
from services.traffic import traffic_source

Edge = tuple[str, str]
Tally = tuple[int, int]
"""(conversations, of which leads)."""
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class FunnelStats:
    """One flow version's funnel, with everything the report draws.

    ``decisions`` is keyed by (node, button, chosen candidate) from ``EdgeChosen``,
    ``buttons`` by (node, button) from ``ButtonPressed``, ``paths`` by the
    sequence of entered nodes, ``segments`` by ("source" | "device", value);
    each counts conversations once and maps to (conversations, leads)."""

    flow_id: str
    flow_version: int
    started: int
    completed: int
    leads: int
    rejected: int
    first_start: float
    last_start: float
    entered: Mapping[str, int]
    left: Mapping[str, int]
    converted: Mapping[str, int]
    edges: Mapping[Edge, int]
    edges_converted: Mapping[Edge, int]
    decisions: Mapping[tuple[str, str, str], Tally]
    buttons: Mapping[tuple[str, str], Tally]
    paths: Mapping[tuple[str, ...], Tally]
    segments: Mapping[tuple[str, str], Tally]
    lead_seconds: tuple[float, ...]
    went_back: Mapping[str, int] = field(default_factory=dict)
    nudged: Mapping[str, int] = field(default_factory=dict)  # idle nudges per node
    abandoned: Mapping[str, int] = field(default_factory=dict)  # abandonments per node

    def counters(self) -> dict[str, int]:
        """The funnel as the read model's counters (``entered:N``, ``edge:A>B``, ...)."""
        out = {"started": self.started, "completed": self.completed, "leads": self.leads}
        out["rejected"] = self.rejected
        out["abandoned"] = sum(self.abandoned.values())
        for prefix, counts in (
            ("entered", self.entered),
            ("left", self.left),
            ("converted", self.converted),
            ("went_back", self.went_back),
            ("nudged", self.nudged),
            ("abandoned", self.abandoned),
        ):
            out.update((f"{prefix}:{node}", n) for node, n in counts.items())
        out.update((f"edge:{a}>{b}", n) for (a, b), n in self.edges.items())
        out.update((f"edge_converted:{a}>{b}", n) for (a, b), n in self.edges_converted.items())
        return {name: n for name, n in out.items() if n}


class _Tallies(Generic[K]):
    """Mutable (conversations, leads) counts by key."""

    def __init__(self) -> None:
        self.n: Counter[K] = Counter()
        self.k: Counter[K] = Counter()

    def add(self, keys: Iterable[K], lead: bool) -> None:
        for key in keys:
            self.n[key] += 1
            if lead:
                self.k[key] += 1

    def frozen(self) -> dict[K, Tally]:
        return {key: (n, self.k[key]) for key, n in self.n.items()}


class _Version:
    """The counters of one flow version, summed as conversations close."""

    def __init__(self, flow_id: str, version: int) -> None:
        self.flow_id, self.version = flow_id, version
        self.started = self.completed = self.leads = self.rejected = 0
        self.first_start, self.last_start = float("inf"), float("-inf")
        self.nodes: _Tallies[str] = _Tallies()
        self.left: _Tallies[str] = _Tallies()
        self.edges: _Tallies[Edge] = _Tallies()
        self.decisions: _Tallies[tuple[str, str, str]] = _Tallies()
        self.buttons: _Tallies[tuple[str, str]] = _Tallies()
        self.paths: _Tallies[tuple[str, ...]] = _Tallies()
        self.segments: _Tallies[tuple[str, str]] = _Tallies()
        self.went_back: _Tallies[str] = _Tallies()
        self.nudged: Counter[str] = Counter()  # per event, as the read model counts them
        self.abandoned: Counter[str] = Counter()
        self.lead_seconds = array("d")

    def close(self, conv: _Open) -> None:
        path, lead = conv.path, conv.lead_at is not None
        pairs = itertools.pairwise(path)
        edges = {pair for i, pair in enumerate(pairs, 1) if i not in conv.breaks}
        self.nodes.add(set(path), lead)
        self.edges.add(edges, lead)
        self.left.add({a for a, _ in edges} | {path[i - 1] for i in conv.breaks if i}, False)
        decisions = {d[:3] for d in conv.decisions}
        self.decisions.add(decisions, lead)
        self.decisions.add(set(conv.withdrawn) - decisions, False)
        self.buttons.add({p[:2] for p in conv.presses}, lead)
        self.went_back.add(set(conv.backs), False)
        self.paths.add((path,), lead)
        self.segments.add(conv.segments, lead)
        if conv.lead_at is not None:
            self.leads += 1
            self.lead_seconds.append(conv.lead_at - conv.started_at)

    def frozen(self) -> FunnelStats:
        return FunnelStats(
            flow_id=self.flow_id,
            flow_version=self.version,
            started=self.started,
            completed=self.completed,
            leads=self.leads,
            rejected=self.rejected,
            first_start=self.first_start,
            last_start=self.last_start,
            entered=dict(self.nodes.n),
            left=dict(self.left.n),
            converted={n: k for n, k in self.nodes.k.items() if k},
            edges=dict(self.edges.n),
            edges_converted={e: k for e, k in self.edges.k.items() if k},
            decisions=self.decisions.frozen(),
            buttons=self.buttons.frozen(),
            paths=self.paths.frozen(),
            segments=self.segments.frozen(),
            lead_seconds=tuple(self.lead_seconds),
            went_back=dict(self.went_back.n),
            nudged=dict(self.nudged),
            abandoned=dict(self.abandoned),
        )


class _Open:
    """What the fold remembers of a conversation that has not completed yet."""

    __slots__ = (
        "backs",
        "breaks",
        "decisions",
        "last_seq",
        "lead_at",
        "path",
        "presses",
        "segments",
        "started_at",
        "version",
        "withdrawn",
    )

    def __init__(self, version: _Version, event: ConversationStarted) -> None:
        self.version = version
        self.last_seq = event.seq
        self.started_at = event.at
        self.lead_at: float | None = None
        # tuples of strings, not lists: the garbage collector stops tracking
        # them, and a fold holds tens of thousands of open conversations
        self.path: tuple[str, ...] = ()
        # (node, button, chosen, seq) and (node, button, seq): a go back withdraws by seq
        self.decisions: tuple[tuple[str, str, str, int], ...] = ()
        self.presses: tuple[tuple[str, str, int], ...] = ()
        self.withdrawn: tuple[tuple[str, str, str], ...] = ()  # decisions gone back from
        self.breaks: tuple[int, ...] = ()  # indices of path entered by going back
        self.backs: tuple[str, ...] = ()  # the nodes re-opened
        device = event.context.device
        self.segments = (("source", traffic_source(event.context)), ("device", device))


def _went_back(conv: _Open, event: WentBack) -> None:
    """What was answered from the re-opened step on is withdrawn; the next node
    entered (the re-opened one) starts a new stretch of the path."""
    kept = event.withdrawn_seq
    conv.withdrawn += tuple(d[:3] for d in conv.decisions if d[3] > kept)
    conv.decisions = tuple(d for d in conv.decisions if d[3] <= kept)
    conv.presses = tuple(p for p in conv.presses if p[2] <= kept)
    conv.breaks += (len(conv.path),)
    conv.backs += (event.node_id,)


class FunnelFold:
    """Feed it batches of events (:meth:`feed`); :meth:`result` gives the funnel
    of every version of ``flow_id`` seen. The only mutable object of the report:
    everything downstream works on the frozen :class:`FunnelStats`."""

    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        self.events = 0
        self._versions: dict[int, _Version] = {}
        self._open: dict[str, _Open] = {}
        # completed conversations: their version and last seq (ints: untracked by the GC)
        self._closed_version: dict[str, int] = {}
        self._closed_seq: dict[str, int] = {}

    def feed(self, events: Iterable[Event]) -> None:
        for event in events:
            self.events += 1
            conv = self._open.get(event.conversation_id)
            if conv is None:
                self._outside(event)
            elif event.seq > conv.last_seq:
                conv.last_seq = event.seq
                self._apply(conv, event)

    def _outside(self, event: Event) -> None:
        """An event of no open conversation: a start, or after a completion."""
        if isinstance(event, ConversationStarted):
            if (
                event.flow_id == self.flow_id
                and not event.preview  # the studio's previews are no traffic
                and event.conversation_id not in self._closed_seq
            ):
                self._start(event)
            return
        cid = event.conversation_id
        last_seq = self._closed_seq.get(cid)
        if last_seq is not None and event.seq > last_seq:
            self._closed_seq[cid] = event.seq
            if isinstance(event, CommandRejected):
                self._versions[self._closed_version[cid]].rejected += 1

    def _start(self, event: ConversationStarted) -> None:
        version = self._versions.get(event.flow_version)
        if version is None:
            version = self._versions[event.flow_version] = _Version(
                event.flow_id, event.flow_version
            )
        version.started += 1
        version.first_start = min(version.first_start, event.at)
        version.last_start = max(version.last_start, event.at)
        self._open[event.conversation_id] = _Open(version, event)

    def _apply(self, conv: _Open, event: Event) -> None:
        if isinstance(event, NodeEntered):
            conv.path += (event.node_id,)
        elif isinstance(event, ButtonPressed):
            conv.presses += ((event.node_id, event.button_id, event.seq),)
        elif isinstance(event, EdgeChosen):
            conv.decisions += ((event.node_id, event.button_id, event.chosen, event.seq),)
        elif isinstance(event, WentBack):
            _went_back(conv, event)
        elif isinstance(event, LeadCaptured):
            if conv.lead_at is None:
                conv.lead_at = event.at
        elif isinstance(event, CommandRejected):
            conv.version.rejected += 1
        elif isinstance(event, VisitorNudged):
            conv.version.nudged[event.node_id] += 1
        elif isinstance(event, ConversationAbandoned):
            conv.version.abandoned[event.node_id] += 1
        elif isinstance(event, ConversationCompleted):
            conv.version.completed += 1
            conv.version.close(conv)
            del self._open[event.conversation_id]
            self._closed_version[event.conversation_id] = conv.version.version
            self._closed_seq[event.conversation_id] = conv.last_seq

    @property
    def open_conversations(self) -> int:
        return len(self._open)

    def result(self) -> dict[int, FunnelStats]:
        """Every version's funnel, open conversations included (counted as they stand)."""
        for conv in self._open.values():
            conv.version.close(conv)
        self._open.clear()
        return {v: acc.frozen() for v, acc in sorted(self._versions.items())}


def fold_funnel(batches: Iterable[Iterable[Event]], flow_id: str) -> dict[int, FunnelStats]:
    fold = FunnelFold(flow_id)
    for batch in batches:
        fold.feed(batch)
    return fold.result()
