"""The processor's engine on in-memory logs: batches committed whole, fencing,
retries after a dependency outage, dead letters, recovery and bounded stops.

The logs are :class:`MemoryLog`s (the commands topic with its group's
committed offsets, events, the changelog) and the writer fences like Kafka's
transactional producers, so what a zombie or a retry could do wrong shows up
as a duplicate (conversation, seq) in the events log or a missing reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.batches import decode_batch
from schemas.codec import encode
from schemas.commands import Command, PressButton, StartConversation, SubmitLead
from schemas.events import Event
from schemas.replies import Reply, decode_reply
from services.conversation.state import ConversationState, fold
from services.conversation.state_codec import encode_state
from services.fakes import InMemoryKeyStore
from services.log_follower import LogRecord
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from services.processor.batch import BatchDecider, ReplyOut, marker_key, state_records
from services.processor.engine import Engine
from services.processor.memory_writer import MemoryPartitionWriter, MemoryTopics
from services.processor.metrics import ProcessorMetrics
from services.processor.partition_worker import PartitionWorker
from services.processor.recovery import Recovered, recover
from services.processor.settings import EngineSettings
from services.processor.state_cache import StateCache
from tests.unit.flows import decider_for

FAST = EngineSettings(retry_seconds=0.002, drain_seconds=0.2, poll_seconds=0.002)
LEAD = {"name": "Ann", "email": "ann@example.com", "consent": "true"}


def start(cid: str) -> Command:
    return StartConversation(
        conversation_id=cid, seq=1, at=1.0, flow_id="quiz", site_id="s", reply_to="0"
    )


def press(cid: str, seq: int, node: str, button: str) -> Command:
    return PressButton(
        conversation_id=cid, seq=seq, at=2.0, node_id=node, button_id=button, reply_to="0"
    )


def lead(cid: str, seq: int) -> Command:
    return SubmitLead(
        conversation_id=cid, seq=seq, at=3.0, node_id="contact", fields=LEAD, reply_to="0"
    )


def to_lead(cid: str) -> list[Command]:
    return [
        start(cid),
        press(cid, 2, "size", "small"),
        press(cid, 3, "colour", "red"),
        lead(cid, 4),
    ]


class FlakyKeys(InMemoryKeyStore):
    """A key store that is away for the next ``failures`` calls (Redis down)."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures

    async def get_or_create(self, conversation_id: str) -> bytes:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("redis is away")
        return await super().get_or_create(conversation_id)


class Processor:
    """An engine over the shared topics, like one ``leadflow run processor``."""

    def __init__(
        self,
        topics: MemoryTopics,
        keys: InMemoryKeyStore | None = None,
        settings: EngineSettings = FAST,
        spill: Path | None = None,
    ) -> None:
        """``spill``: hold one state per partition in memory, the rest in files
        under this folder (as a processor past LEADFLOW_PROCESSOR_STATE_CACHE)."""
        self.topics = topics
        self.spill = spill
        self.caches = 0
        self.settings = settings
        self.replies: list[Reply] = []
        self.keys = keys or InMemoryKeyStore()
        self.metrics = ProcessorMetrics()
        self.decider = decider_for(self.keys)
        self.follower = MemoryLogFollower(topics.commands, group_id=topics.group)
        self.engine = Engine(self.follower, self.worker, settings)
        self.task: asyncio.Task[None] | None = None

    def worker(self, partition: int) -> PartitionWorker:
        return PartitionWorker(
            partition,
            MemoryPartitionWriter(self.topics, partition),
            self.recover,
            self.decider,
            self.reply,
            self.metrics,
            self.settings,
        )

    async def recover(self, partition: int) -> Recovered:
        logs = {"changelog": self.topics.changelog, "events": self.topics.events}
        states = None
        if self.spill is not None:
            self.caches += 1
            states = StateCache(1, self.spill / f"{partition}-{self.caches}.sqlite")
        return await recover(
            lambda role, p: MemoryLogFollower(logs[role], partitions=[p]), partition, states
        )

    async def reply(self, reply: ReplyOut) -> None:
        self.replies.append(decode_reply(reply.value))

    async def __aenter__(self) -> Processor:
        self.task = asyncio.create_task(self.engine.run())
        await until(
            lambda: self.engine.running and all(w.ready for w in self.engine.workers.values())
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 1.0)

    async def crash(self) -> None:
        """As kill -9: every task ends where it is, nothing is flushed (no checkpoint,
        no position commit, the writers are not stopped)."""
        tasks = [t for t in [w._task for w in self.engine.workers.values()] + [self.task] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def new_topics(partitions: int = 2) -> MemoryTopics:
    return MemoryTopics(
        MemoryLog(partitions, "commands"),
        MemoryLog(partitions, "events"),
        MemoryLog(partitions, "changelog"),
    )


def send(topics: MemoryTopics, *commands: Command, partition: int = 0) -> None:
    for command in commands:
        topics.commands.append(partition, encode(command), key=command.conversation_id.encode())


def logged_events(topics: MemoryTopics) -> list[Event]:
    return [
        event
        for p in range(topics.events.partitions)
        for record in topics.events.partition(p).records
        for event in decode_batch(record.value or b"").events
    ]


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110  (polls state the engine's tasks change)
            await asyncio.sleep(0.002)


def no_duplicates(events: list[Event]) -> None:
    keys = [(e.conversation_id, e.seq) for e in events]
    assert len(keys) == len(set(keys)), "a (conversation, seq) was written twice"


async def test_commands_become_events_states_and_replies_in_order() -> None:
    topics = new_topics()
    async with Processor(topics) as processor:
        send(topics, *to_lead("a"))
        send(topics, start("b"), partition=1)
        await until(lambda: len(processor.replies) == 5)
        send(topics, start("c"))  # a later batch records the earlier one's events offset
        await until(lambda: len(processor.replies) == 6)
    assert [r.ack for r in processor.replies if r.conversation_id == "a"] == [1, 2, 3, 4]
    events = logged_events(topics)
    no_duplicates(events)
    assert "LeadCaptured" in [e.type for e in events if e.conversation_id == "a"]
    assert topics.commands.committed[topics.group] == {0: 5, 1: 1}
    states = {r.key: r.value for r in topics.changelog.partition(0).records}
    assert b"a" in states and b"c" in states
    a_events = [r.offset for r in topics.events.partition(0).records if r.key == b"a"]
    assert int(states[marker_key(0)] or b"-1") >= a_events[-1]


async def test_a_fenced_zombie_writes_nothing_and_the_new_owner_repeats_nothing() -> None:
    """Regression: a processor frozen past its session came back and appended
    events another processor had already written for the same commands."""
    topics = new_topics(1)
    zombie = Processor(topics)
    async with zombie:
        send(topics, start("a"))
        await until(lambda: len(zombie.replies) == 1)
        async with Processor(topics) as owner:  # took the partition over: fenced the zombie
            send(topics, press("a", 2, "size", "small"))
            zombie.engine.workers[0].offer(topics.commands.partition(0).records[-1])
            await until(lambda: len(owner.replies) == 1)
            await until(lambda: zombie.engine.workers[0].lost)
    no_duplicates(logged_events(topics))
    assert [r.ack for r in zombie.replies] == [1]  # no late reply from the zombie


async def test_a_key_store_outage_delays_a_lead_and_loses_nothing() -> None:
    """Regression: a Redis blip crashed the processor's agent with the command
    never acknowledged. Now the batch waits and is decided again."""
    topics = new_topics(1)
    keys = FlakyKeys(failures=5)
    async with Processor(topics, keys) as processor:
        send(topics, *to_lead("a"))
        await until(lambda: len(processor.replies) == 4)
        assert processor.engine.workers[0].failing_since is None
    events = logged_events(topics)
    no_duplicates(events)
    assert [e.type for e in events].count("LeadCaptured") == 1
    assert keys.failures == 0


class CrashingOnce:
    """A batch decider whose first call raises what no handler expects (as a
    client library's state machine did after a broker restart)."""

    def __init__(self, inner: BatchDecider) -> None:
        self.inner = inner
        self.crashed = False

    async def decide(self, *args: Any) -> Any:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("an unexpected state")
        return await self.inner.decide(*args)


async def test_a_crashed_worker_takes_its_partition_over_again_and_loses_nothing() -> None:
    """Regression: an unexpected error left the partition out of service until the
    next rebalance (a visitor's resume answered unavailable for 90 s after a broker
    restart in CI). Now the worker stops its writer, takes the partition over again,
    recovers its states from the log and decides the batch again."""
    topics = new_topics(1)
    processor = Processor(topics)
    crashing = CrashingOnce(processor.decider)
    processor.decider = crashing  # type: ignore[assignment]
    async with processor:
        send(topics, start("a"))
        await until(lambda: len(processor.replies) == 1)
        crashing.crashed = False  # the next batch crashes once
        send(topics, press("a", 2, "size", "small"), press("a", 3, "colour", "red"))
        await until(lambda: len(processor.replies) == 3)
        worker = processor.engine.workers[0]
        assert worker.restarts == 2 and worker.failed is None and worker.ready
    assert [r.ack for r in processor.replies] == [1, 2, 3]
    events = logged_events(topics)
    no_duplicates(events)
    assert topics.epochs[0] == 3  # taken over (fenced) again after each crash


class AlwaysCrashing:
    async def decide(self, *args: Any) -> Any:
        raise RuntimeError("an unexpected state, every time")


async def test_a_worker_that_crashes_again_and_again_counts_as_stuck() -> None:
    """Taking the partition over again must not hide a crash loop from the stall
    watch (which restarts the process): the spell of failures starts at the first
    crash and only a committed batch ends it."""
    topics = new_topics(1)
    processor = Processor(topics)
    async with processor:
        worker = processor.engine.workers[0]
        worker.decider = AlwaysCrashing()  # type: ignore[assignment]
        send(topics, start("a"))
        await until(lambda: worker.restarts >= 3)
        first = worker.failing_since
        assert first is not None
        assert processor.engine.stuck_for(first + 1.0) == pytest.approx(1.0)
        worker.decider = processor.decider
        await until(lambda: len(processor.replies) == 1)
        assert worker.failing_since is None


async def test_a_failed_commit_is_retried_without_duplicates() -> None:
    topics = new_topics(1)
    topics.fail_commits = 3
    async with Processor(topics) as processor:
        send(topics, start("a"), press("a", 2, "size", "small"))
        await until(lambda: len(processor.replies) == 2)
    no_duplicates(logged_events(topics))
    assert len(logged_events(topics)) > 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"not json", b"unreadable"), (b'{"type":"StartConversation","v":99}', b"newer_format")],
)
async def test_an_unreadable_command_is_dead_lettered_and_the_rest_go_on(
    value: bytes, reason: bytes
) -> None:
    topics = new_topics(1)
    async with Processor(topics) as processor:
        send(topics, start("a"))
        topics.commands.append(0, value, key=b"x")
        send(topics, press("a", 2, "size", "small"))
        await until(lambda: len(processor.replies) == 2)
    [dead] = topics.dead.partition(0).records
    assert dead.value == value
    assert dict(dead.headers) == {
        "leadflow-source-partition": b"0",
        "leadflow-source-offset": b"1",
        "leadflow-reason": reason,
    }
    assert topics.commands.committed[topics.group] == {0: 3}


async def test_a_restarted_processor_recovers_and_treats_a_retry_as_a_duplicate() -> None:
    topics = new_topics(1)
    async with Processor(topics) as first:
        send(topics, start("a"), press("a", 2, "size", "small"))
        await until(lambda: len(first.replies) == 2)
    async with Processor(topics) as second:
        assert b"a" in second.engine.workers[0].states
        send(topics, press("a", 2, "size", "small"))  # the visitor's retry
        await until(lambda: len(second.replies) == 1)
    assert second.replies[0] == first.replies[1]  # the original reply, nothing new logged
    no_duplicates(logged_events(topics))


async def test_recovery_folds_events_the_changelog_missed() -> None:
    """A state that lags the log (written by the faust processor before it) is
    brought level before the partition's next command."""
    topics = new_topics(1)
    async with Processor(topics) as first:
        send(topics, start("a"))
        await until(lambda: len(first.replies) == 1)
    topics.changelog.append(0, b"-1", key=marker_key(0))  # as if nothing was reflected
    topics.changelog.append(0, None, key=b"a")  # and the state was lost
    async with Processor(topics) as second:
        assert second.engine.workers[0].states[b"a"].seq > 0
        send(topics, press("a", 2, "size", "small"))
        await until(lambda: len(second.replies) == 1)
    no_duplicates(logged_events(topics))


async def test_an_unreadable_events_record_puts_only_its_partition_out_of_service() -> None:
    topics = new_topics(2)
    topics.events.append(0, b"garbage", key=b"a")
    processor = Processor(topics)
    processor.task = asyncio.create_task(processor.engine.run())
    try:
        await until(lambda: 0 in processor.engine.out_of_service())
        assert "events partition 0 offset 0" in processor.engine.out_of_service()[0]
        await until(lambda: processor.engine.workers[1].ready)
        send(topics, start("b"), partition=1)
        await until(lambda: len(processor.replies) == 1)
    finally:
        await processor.engine.stop()
        await processor.task


async def test_stopping_during_an_outage_is_bounded() -> None:
    topics = new_topics(1)
    async with Processor(topics, FlakyKeys(failures=10**6)) as processor:
        send(topics, *to_lead("a"))
        await until(lambda: processor.engine.workers[0].failing_since is not None)
        stopping = asyncio.get_running_loop().time()
    assert asyncio.get_running_loop().time() - stopping < 1.0
    assert topics.commands.committed[topics.group] == {0: 3}  # the lead waits: the rest is done


def test_a_state_is_stored_as_the_codec_encodes_it() -> None:
    """The changelog format is the faust processor's: upgrades keep their states.
    A batch's own records are its events only: states go in checkpoints."""
    records = [LogRecord(0, 0, encode(start("a")), b"a")]
    decided = asyncio.run(decider_for().decide(0, records, {}))
    state = decided.states[b"a"]
    assert [r.kind for r in decided.records] == ["events"]
    [checkpoint] = state_records([b"a"], decided.states, {})
    assert (checkpoint.kind, checkpoint.key, checkpoint.value) == (
        "state",
        b"a",
        encode_state(state),
    )


async def recovered_matches_the_log(topics: MemoryTopics, partition: int = 0) -> None:
    """What a next owner recovers (checkpoint + catch-up) is the fold of the log."""
    logs = {"changelog": topics.changelog, "events": topics.events}
    got = await recover(lambda role, p: MemoryLogFollower(logs[role], partitions=[p]), partition)
    folded: dict[bytes, ConversationState] = {}
    for record in topics.events.partition(partition).records:
        batch = decode_batch(record.value or b"")
        key = batch.conversation_id.encode()
        folded[key] = fold(
            folded.get(key) or ConversationState(batch.conversation_id), batch.events
        )
    assert got.states == folded


async def test_a_crash_between_checkpoints_loses_nothing_and_the_catch_up_is_checkpointed() -> None:
    """Between checkpoints the changelog lags the log: a kill -9 then leaves states
    for the next owner to catch up from the events. That owner's next checkpoint
    must carry the states it caught up (its marker is past their events), or a
    third owner would recover them stale."""
    topics = new_topics(1)
    rarely = dataclasses.replace(FAST, checkpoint_seconds=3600)
    first = await Processor(topics, settings=rarely).__aenter__()
    send(topics, *to_lead("a"))
    await until(lambda: len(first.replies) == 4)
    await first.crash()
    assert topics.changelog.partition(0).records == []  # no checkpoint was due
    second = Processor(topics, settings=dataclasses.replace(FAST, checkpoint_seconds=0))
    await second.__aenter__()
    assert second.engine.workers[0].states[b"a"].seq > 0  # caught up from the events
    send(topics, start("b"))  # the position may not be committed: a repeats first
    await until(lambda: any(r.conversation_id == "b" for r in second.replies))
    assert second.engine.workers[0].checkpoints > 0
    await second.crash()
    checkpointed = {r.key for r in topics.changelog.partition(0).records}
    assert checkpointed == {b"a", b"b", marker_key(0)}
    await recovered_matches_the_log(topics)
    async with Processor(topics) as third:  # retries of both: duplicates, nothing new
        send(topics, lead("a", 4), start("b"))
        await until(lambda: third.replies[-2:] == [first.replies[-1], second.replies[-1]])
    no_duplicates(logged_events(topics))


async def test_a_graceful_stop_checkpoints_the_changed_states() -> None:
    topics = new_topics(1)
    async with Processor(topics, settings=dataclasses.replace(FAST, checkpoint_seconds=3600)) as p:
        send(topics, *to_lead("a"))
        await until(lambda: len(p.replies) == 4)
        assert topics.changelog.partition(0).records == []
    assert p.engine.workers == {}
    marker = [r for r in topics.changelog.partition(0).records if r.key == marker_key(0)]
    assert int(marker[-1].value or b"-1") == topics.events.partition(0).records[-1].offset
    await recovered_matches_the_log(topics)


async def test_an_undecodable_state_puts_its_partition_out_of_service_naming_it() -> None:
    """A changelog state this processor cannot decode is no reason to retry for
    ever unseen: the partition is out of service and readiness says where."""
    topics = new_topics(2)
    topics.changelog.append(0, b"not a state", key=b"a")
    processor = Processor(topics)
    processor.task = asyncio.create_task(processor.engine.run())
    try:
        await until(lambda: 0 in processor.engine.out_of_service())
        assert processor.engine.out_of_service()[0].startswith("changelog partition 0 offset 0")
        await until(lambda: processor.engine.workers[1].ready)
    finally:
        await processor.engine.stop()
        await processor.task


async def test_a_position_commit_lost_makes_the_next_owner_repeat_nothing() -> None:
    """The commands position is committed after the transaction, at least once: a
    processor that died before committing it leaves a stale position, and the next
    owner decides those commands again as repeats: no event twice."""
    topics = new_topics(1)
    async with Processor(topics) as first:
        send(topics, *to_lead("a"))
        await until(lambda: len(first.replies) == 4)
    topics.commands.committed[topics.group] = {0: 0}  # the commit never reached the group
    async with Processor(topics) as second:
        await until(lambda: len(second.replies) == 4)
    no_duplicates(logged_events(topics))
    assert [r.error.code if r.error else None for r in second.replies][-1] is None
    assert second.replies[-1] == first.replies[-1]  # the repeat of the last: its reply again


async def test_a_processor_has_joined_only_once_the_group_assigned_it() -> None:
    """Readiness waits for the group's assignment: a processor that answered ready
    while its join was still pending let traffic be counted on it too early."""
    processor = Processor(new_topics(1))
    assert not processor.engine.joined
    async with processor:
        assert processor.engine.joined


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_states_beyond_the_cache_spill_to_disk_and_nothing_changes(tmp_path: Path) -> None:
    """With one state in memory per partition, every other conversation's state is
    read back from the spill file: the replies, the log and what a next owner
    recovers are those of an unbounded processor, and a stop removes the file."""
    topics, unbounded = new_topics(1), new_topics(1)
    cids = [f"c{i}" for i in range(6)]
    commands = [c for cid in cids for c in to_lead(cid)]
    interleaved = sorted(commands, key=lambda c: (c.seq, c.conversation_id))
    async with Processor(unbounded) as reference:
        send(unbounded, *interleaved)
        await until(lambda: len(reference.replies) == len(commands))
    async with Processor(topics, spill=tmp_path) as processor:
        send(topics, *interleaved)
        await until(lambda: len(processor.replies) == len(commands))
        states = processor.engine.workers[0].states
        assert (states.in_memory, states.spilled, len(states)) == (1, 5, 6)
        assert sorted(states) == sorted(cid.encode() for cid in cids)
        assert files(tmp_path) == ["0-1.sqlite"]
    assert sorted(map(repr, processor.replies)) == sorted(map(repr, reference.replies))
    assert files(tmp_path) == []  # the stop dropped the file
    no_duplicates(logged_events(topics))
    await recovered_matches_the_log(topics)
    async with Processor(topics, spill=tmp_path) as second:  # recovered into a cache of 1
        assert second.engine.workers[0].states.spilled == 5
        send(topics, lead("c0", 4))  # the visitor's retry: answered from the file
        await until(lambda: len(second.replies) == 1)
    assert second.replies[0] == next(
        r for r in processor.replies if r.conversation_id == "c0" and r.command_seq == 4
    )
    no_duplicates(logged_events(topics))


async def test_a_crash_with_spilled_states_loses_nothing(tmp_path: Path) -> None:
    topics = new_topics(1)
    rarely = dataclasses.replace(FAST, checkpoint_seconds=3600)
    first = await Processor(topics, settings=rarely, spill=tmp_path).__aenter__()
    send(topics, *[c for cid in ("a", "b", "c") for c in to_lead(cid)])
    await until(lambda: len(first.replies) == 12)
    await first.crash()
    second = await Processor(topics, spill=tmp_path / "second").__aenter__()
    try:
        assert {second.engine.workers[0].states[k].seq for k in (b"a", b"b", b"c")} != {0}
        send(topics, start("d"))
        await until(lambda: any(r.conversation_id == "d" for r in second.replies))
    finally:
        await second.__aexit__()
    no_duplicates(logged_events(topics))
    await recovered_matches_the_log(topics)
