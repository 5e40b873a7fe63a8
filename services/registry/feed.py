"""The flow registry, followed: every process's view of published flows and active versions.

:class:`RegistryFeed` reads the registry log through a
:class:`~services.log_follower.LogFollower` (events.db's ``flow_registry`` table
in ``leadflow serve``, the compacted ``{prefix}flows`` topic in the distributed
mode). At a start, :meth:`RegistryFeed.load` folds every record up to the end the
log had, then :meth:`RegistryFeed.run` follows it and applies each new record at
once: a published version is added to the process's
:class:`~services.catalog.FlowCatalog` (so conversations pinned to it can finish),
an activation makes new conversations start on it. Gateways, processors, the
projector, the policy service and lead delivery each run one, so a publish
reaches every process without a restart.

Writers append through a :class:`RegistryWriter` (all records of one publish in
one atomic append: a publish and its activation are both in the log or neither
is); :meth:`RegistryFeed.append` appends and waits until this feed applied them.
A record that does not decode, or a published document that does not validate
(a newer flow format than this process knows), is logged with its position and
skipped: the versions it knows keep serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from schemas.flow_registry import (
    FlowActivated,
    FlowDrafted,
    FlowPublished,
    RegistryRecord,
    UnreadableRegistryRecord,
    decode_record,
)
from schemas.flow_validation import validate_document
from services.catalog import FlowCatalog
from services.log_follow import follow
from services.log_follower import LogFollower, LogRecord, bounded_range, read_bounded
from services.registry.core import (
    Conflict,
    DraftCollision,
    Drafted,
    Published,
    Registry,
    UnknownVersion,
    apply,
    plan_activate,
    plan_draft,
    plan_publish,
)

log = logging.getLogger("leadflow.registry")
T = TypeVar("T")


CHANGE_ATTEMPTS = 5


class StaleRegistry(RuntimeError):
    """A writer refused to append: the log holds records the caller has not read
    (another process wrote since the caller planned), or another writer fenced it."""


class RegistryBusy(RuntimeError):
    """Every attempt of a change met a log that had moved: try again later."""


class RegistryWriter(Protocol):
    async def append_registry(self, records: Sequence[RegistryRecord]) -> int:
        """Append ``records`` atomically and durably; the offset of the last one.
        Raises :class:`StaleRegistry` rather than append a plan made on a stale view."""
        ...


class RegistryFeed:
    def __init__(
        self,
        follower: LogFollower,
        catalog: FlowCatalog,
        writer: RegistryWriter | None = None,
        *,
        retry_on: tuple[type[BaseException], ...] = (OSError,),
        wait: float = 0.1,
    ) -> None:
        self._follower = follower
        self.catalog = catalog
        self.registry = Registry()
        self.writer = writer
        self._retry_on = retry_on
        self._wait = wait
        self.position: int | None = None  # the next offset to read (None: the beginning)
        self.loaded = asyncio.Event()
        self.skipped = 0
        self.applied_at: float | None = None  # wall time of the last record applied
        self._applied = asyncio.Condition()
        self._changing = asyncio.Lock()  # one plan-and-append at a time in this process
        self.change_backoff = 0.05  # seconds, times the attempt, after a stale append
        self.clock: Callable[[], float] = time.time

    def _take(self, record: LogRecord) -> None:
        try:
            if record.value is None:
                raise UnreadableRegistryRecord("empty record")
            decoded = decode_record(record.value)
        except UnreadableRegistryRecord as exc:
            self._skip(record, str(exc))
            return
        if isinstance(decoded, FlowPublished):
            self._take_published(record, decoded)
        elif isinstance(decoded, FlowDrafted):
            self._take_draft(record, decoded)
        else:
            self._take_activation(decoded)

    def _take_published(self, record: LogRecord, published: FlowPublished) -> None:
        flow, errors = validate_document(dict(published.document), published.flow_id)
        if flow is None:
            self._skip(record, f"the document does not validate here: {errors[0]}")
            return
        self.registry = apply(self.registry, published)
        if self.registry.published.get((flow.id, flow.version)) == published:
            self.catalog.add(flow)  # the registry's version wins over a file's of that number
        self._sync_active(published.flow_id)

    def _take_draft(self, record: LogRecord, drafted: FlowDrafted) -> None:
        """A draft joins the catalog under its reserved negative number, so a
        preview conversation pinned to it runs (and replays) on it."""
        flow, errors = validate_document(dict(drafted.document), drafted.flow_id)
        if flow is None:
            self._skip(record, f"the draft does not validate here: {errors[0]}")
            return
        if (drafted.flow_id, drafted.version) in self.registry.drafts:
            return  # drafted before (or another content with its number: the first stays)
        self.registry = apply(self.registry, drafted)
        self.catalog.add_draft(dataclasses.replace(flow, version=drafted.version))

    def _take_activation(self, activation: FlowActivated) -> None:
        self.registry = apply(self.registry, activation)
        self._sync_active(activation.flow_id)

    def _sync_active(self, flow_id: str) -> None:
        for (site_id, fid), version in self.registry.active.items():
            if fid == flow_id:
                self.catalog.activate(flow_id, version, site_id)

    def _skip(self, record: LogRecord, reason: str) -> None:
        self.skipped += 1
        log.warning(
            "flow registry record at %s position %d skipped: %s",
            self._follower.name,
            record.offset,
            reason,
        )

    async def load(self) -> None:
        """Fold the registry up to its end now."""
        follower = self._follower
        await follower.start()
        try:
            start, end = await bounded_range(follower)
            async for chunk in read_bounded(follower, start, end):
                for record in chunk.records:
                    self._take(record)
                    self.position = record.offset + 1
            self.position = max(self.position or 0, end.get(0, 0))
        finally:
            await follower.stop()
        self.loaded.set()
        log.info(
            "flow registry loaded",
            extra={
                "flows": self.registry.flow_ids(),
                "versions": len(self.registry.published),
                "skipped": self.skipped,
            },
        )

    async def load_through(self, offset: int, wait_seconds: float = 10.0) -> None:
        """:meth:`load` until the registry is folded past ``offset`` (a record this
        process just wrote). A committed transaction's records become readable
        only once its markers are written, which the broker does after answering
        the commit: a load right after it can still end before them.
        TimeoutError if they are not readable within ``wait_seconds``."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            await self.load()
            if (self.position or 0) > offset:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the flow registry did not reach offset {offset}")
            await asyncio.sleep(self._wait / 2)

    async def run(self) -> None:
        """Follow the registry after :meth:`load`, applying every new record, until cancelled."""

        async def positions(partitions: list[int]) -> dict[int, int | None]:
            return {p: self.position for p in partitions}

        async def handle(records: list[LogRecord]) -> None:
            for record in records:
                self._take(record)
                self.position = record.offset + 1
                self.applied_at = record.timestamp
            async with self._applied:
                self._applied.notify_all()

        await follow(self._follower, handle, positions, retry_on=self._retry_on, wait=self._wait)

    async def append(self, records: Sequence[RegistryRecord], wait_seconds: float = 10.0) -> int:
        """Append ``records`` (one atomic write) and wait until this feed applied
        them; the offset of the last. TimeoutError if the feed did not get there."""
        if self.writer is None:
            raise RuntimeError("this registry feed has no writer")
        if not records:
            return (self.position or 0) - 1
        offset = await self.writer.append_registry(records)

        async def applied() -> None:
            async with self._applied:
                await self._applied.wait_for(lambda: (self.position or 0) > offset)

        await asyncio.wait_for(applied(), wait_seconds)
        return offset

    async def publish(
        self,
        document: Mapping[str, Any],
        by: str,
        *,
        activate_for: str | None,
        if_match: int | None = None,
    ) -> Published | Conflict:
        """Publish a validated document (see :func:`services.registry.core.plan_publish`)
        and wait until this process serves it."""

        def plan() -> tuple[Published | Conflict, Sequence[RegistryRecord]]:
            planned = plan_publish(
                self.registry,
                document,
                by=by,
                at=self.clock(),
                activate_for=activate_for,
                if_match=if_match,
            )
            return planned, planned.records if isinstance(planned, Published) else ()

        return await self._change(plan)

    async def draft(self, document: Mapping[str, Any], by: str) -> Drafted | DraftCollision:
        """Make a validated document a draft (see :func:`services.registry.core.plan_draft`)
        and wait until this process can play it."""

        def plan() -> tuple[Drafted | DraftCollision, Sequence[RegistryRecord]]:
            planned = plan_draft(self.registry, document, by=by, at=self.clock())
            created = isinstance(planned, Drafted) and planned.created
            return planned, [planned.record] if isinstance(planned, Drafted) and created else ()

        return await self._change(plan)

    async def activate(
        self, flow_id: str, version: int, site_id: str, by: str
    ) -> FlowActivated | UnknownVersion:
        """Make ``version`` active for ``site_id`` ("": every site) and wait until
        this process serves it."""

        def plan() -> tuple[FlowActivated | UnknownVersion, Sequence[RegistryRecord]]:
            planned = plan_activate(
                self.registry, flow_id, version, site_id, by=by, at=self.clock()
            )
            return planned, [planned] if isinstance(planned, FlowActivated) else ()

        return await self._change(plan)

    async def _change(self, plan: Callable[[], tuple[T, Sequence[RegistryRecord]]]) -> T:
        """Plan against this feed's registry and append; when the writer refuses
        because the log moved since (another process wrote), wait for this feed to
        read what was written and plan again: a stale plan is never appended.
        :class:`RegistryBusy` after :data:`CHANGE_ATTEMPTS` refusals in a row."""
        async with self._changing:
            for attempt in range(CHANGE_ATTEMPTS):
                decided, records = plan()
                if not records:
                    return decided
                try:
                    await self.append(records)
                    return decided
                except StaleRegistry:
                    await asyncio.sleep(
                        self.change_backoff * (attempt + 1)
                    )  # the feed reads what moved
            raise RegistryBusy(f"the flow registry changed under {CHANGE_ATTEMPTS} plans in a row")
