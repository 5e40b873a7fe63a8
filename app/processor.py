"""Composition root of the conversation processor (``leadflow run processor``).

The processor follows ``commands`` in the processors' consumer group and runs
one worker per assigned partition (:mod:`services.processor.engine`; the
worker: :mod:`services.processor.partition_worker`): each decides its
commands in batches and writes each batch's events in one Kafka
transaction (two producers per partition taking turns, fenced per partition:
:mod:`services.distributed.kafka_writer`), with every 2 s a checkpoint of the
changed conversations' states (the changelog), then sends the replies; the
commands positions go to the group after the transactions (at least once).
States are recovered from the changelog's checkpoint and the events after it
when a partition is assigned.

Edges are chosen by a :class:`~policy.thompson.ThompsonPolicy`; a task follows
the compacted ``policy-snapshots`` topic and installs each flow's snapshot (a
hot swap); the first commands wait (bounded) until the snapshots that were there
at start are loaded. Before it joins the group it loads the flow registry (the
``flows`` topic, seeded from the flow files: :mod:`services.registry.distributed`)
and then follows it, so a published version is served without a restart.

The processor serves ``/healthz``, ``/readyz`` and ``/metrics`` on its own small
aiohttp server (services/processor/http.py). Ready means: Kafka answers a
metadata request, Redis answers a ping, and every assigned partition is
recovered and in service. SIGTERM finishes (or abandons, after
``drain_seconds``) each partition's batch in hand, leaves the group and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer

from policy.flow_snapshots import flow_checker
from policy.snapshots_kafka import SnapshotFollower
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from services.catalog import FlowCatalog
from services.distributed.command_sealing import CommandSealer
from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.kafka_writer import KafkaPartitionWriter
from services.distributed.redis_client import redis_client
from services.distributed.redis_keystore import RedisKeyStore
from services.distributed.settings import KafkaSettings
from services.policy_port import EdgePolicy
from services.processor.batch import BatchDecider, ReplyOut
from services.processor.engine import Engine
from services.processor.http import ProcessorHttp, Readiness, Stall, create_http_app
from services.processor.metrics import Lag, ProcessorMetrics, refresh
from services.processor.partition_worker import PartitionWorker
from services.processor.recovery import Recovered, recover
from services.processor.settings import EngineSettings
from services.processor.stall import STALL_EXIT_CODE, StallWatch, WorkerView
from services.processor.state_cache import DEFAULT_CAPACITY, StateCache
from services.processor.state_dir import StateDir
from services.processor.timers import PartitionTimers
from services.registry.distributed import DistributedRegistry
from services.tracing import configure_tracing

log = logging.getLogger(__name__)
TABLE = "conversations"  # the changelog's table name: <group>-conversations-changelog
FETCH_MAX_WAIT_MS = int(os.environ.get("LEADFLOW_FETCH_MAX_WAIT_MS", "5"))


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    kafka: KafkaSettings
    redis_url: str
    session_timeout_seconds: float = 10.0
    redis_prefix: str = "leadflow:"
    policy_mode: str = "thompson"  # or "uniform": no snapshots, every edge 1/k
    policy_load_timeout_seconds: float = 15.0
    http_host: str = "0.0.0.0"
    http_port: int = 8092  # /healthz, /readyz, /metrics; LEADFLOW_PROCESSOR_HTTP_PORT
    stall_seconds: float = 120.0  # out of service this long while its dependencies answer
    engine: EngineSettings = field(default_factory=EngineSettings)
    state_cache: int = DEFAULT_CAPACITY  # states in memory per partition (the rest spill)
    state_dir: Path | None = None  # where they spill (None: the system temporary directory)


def exit_stalled(seconds: float) -> None:
    """The stall watch fired: leave at once, for the supervisor to start a new process.

    No graceful stop: a stuck worker may hang in it, and nothing needs it (an
    uncommitted batch is decided again by the next owner)."""
    log.error(
        "out of service for %.0f s while its dependencies answered; exiting with %d for"
        " the supervisor to restart this processor (LEADFLOW_PROCESSOR_STALL_SECONDS)",
        seconds,
        STALL_EXIT_CODE,
    )
    logging.shutdown()
    os._exit(STALL_EXIT_CODE)


class Processor:
    """Everything one processor process runs, built from settings; nothing
    connects before :meth:`start`."""

    def __init__(
        self,
        settings: ProcessorSettings,
        catalog: FlowCatalog,
        sealer: CommandSealer,
        registry: DistributedRegistry | None = None,
    ) -> None:
        kafka = settings.kafka
        self.settings = settings
        self.metrics = ProcessorMetrics()
        self.registry = registry
        if registry is not None:
            registry.bind_metrics(self.metrics.registry)
        self.redis = redis_client(settings.redis_url)
        self.replies = AIOKafkaProducer(
            **kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=0
        )
        self.policy: EdgePolicy = UniformPolicy()
        self.snapshots: SnapshotFollower | None = None
        if settings.policy_mode == "thompson":
            thompson = ThompsonPolicy()
            self.snapshots = SnapshotFollower(kafka, thompson, check=flow_checker(catalog))
            self.policy = thompson
        self.decider = BatchDecider(
            catalog,
            self.policy,
            RedisKeyStore(self.redis, prefix=settings.redis_prefix),
            open_command=sealer.open,
            metrics=self.metrics,
        )
        self.commands = KafkaLogFollower(
            kafka,
            kafka.commands_topic,
            group_id=kafka.processor_id,
            session_timeout_ms=int(settings.session_timeout_seconds * 1000),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.engine = Engine(self.commands, self._worker, settings.engine)
        self.readiness = Readiness(
            worker_ready=self._serving,
            checks={"kafka": self._kafka_answers, "redis": self.redis.ping},
            stall=Stall(StallWatch(settings.stall_seconds), self._view, exit_stalled),
        )
        self.http = ProcessorHttp(
            create_http_app(self.metrics, self.readiness, self._refresh, self._detail),
            self.readiness,
            host=settings.http_host,
            port=settings.http_port,
        )
        self.state_dir = StateDir(settings.state_dir)
        self._tasks: list[asyncio.Task[None]] = []

    def _worker(self, partition: int) -> PartitionWorker:
        writer = KafkaPartitionWriter(self.settings.kafka, partition)
        return PartitionWorker(
            partition,
            writer,
            self._recover,
            self.decider,
            self._send_reply,
            self.metrics,
            self.settings.engine,
            timers=PartitionTimers(self.decider.catalog, writer),
        )

    async def _recover(self, partition: int) -> Recovered:
        kafka = self.settings.kafka
        topics = {"changelog": kafka.changelog_topic, "events": kafka.events_topic}
        states = StateCache(self.settings.state_cache, self.state_dir.file_for(partition))
        try:
            return await recover(
                lambda role, p: KafkaLogFollower(kafka, topics[role], partitions=[p]),
                partition,
                states,
            )
        except BaseException:
            states.close()  # the worker tries again with a new one
            raise

    async def _send_reply(self, reply: ReplyOut) -> None:
        """Hand the reply to the producer without waiting for Kafka: a lost reply
        makes the visitor retry, which is idempotent."""
        await self.replies.send(
            self.settings.kafka.replies_topic,
            value=reply.value,
            key=reply.key,
            partition=reply.partition,
            headers=list(reply.headers),
        )

    async def _kafka_answers(self) -> None:
        """A metadata round trip (a TCP connect also succeeds to a frozen broker)."""
        if not await self.replies.client.force_metadata_update():
            raise ConnectionError("Kafka did not answer a metadata request")

    def _serving(self) -> bool:
        engine = self.engine
        return (
            engine.running
            and engine.joined
            and not engine.rebalancing
            and not engine.recovering()
            and not engine.out_of_service()
        )

    def _view(self) -> WorkerView:
        engine = self.engine
        return WorkerView(
            engine.running,
            engine.rebalancing,
            engine.recovering(),
            len(engine.workers),
            stuck=engine.stuck_for(time.monotonic()) > 0,
        )

    def _detail(self) -> Mapping[str, object]:
        out_of_service = self.engine.out_of_service()
        return {"out_of_service": {str(p): why for p, why in sorted(out_of_service.items())}}

    def _lags(self) -> Mapping[int, Lag]:
        try:
            lags = self.commands.lag()
        except RuntimeError:  # not started yet, or stopping
            return {}
        out: dict[int, Lag] = {}
        for partition, behind in lags.items():
            worker = self.engine.workers.get(partition)
            queued = len(worker.queue) if worker is not None else 0
            out[partition] = Lag(behind + queued, 0)
        return out

    def _refresh(self) -> None:
        installed = self.policy.installed if isinstance(self.policy, ThompsonPolicy) else tuple
        refresh(self.metrics, self._lags, installed, self.engine.in_flight, states=self._states)

    def _states(self) -> tuple[int, int]:
        caches = [worker.states for worker in self.engine.workers.values()]
        return sum(c.in_memory for c in caches), sum(c.spilled for c in caches)

    async def start(self) -> None:
        """Serve HTTP at once, then join the group once the flow registry and the
        snapshots loaded."""
        await self.http.start()
        self.state_dir.open()
        await self.replies.start()
        if self.registry is not None:
            await self.registry.load_until_up()
            self.registry.start_following()
        if self.snapshots is not None:
            self._tasks.append(asyncio.create_task(self.snapshots.run(), name="snapshots"))
            await self.snapshots.wait_loaded(self.settings.policy_load_timeout_seconds)
        self._tasks.append(asyncio.create_task(self.engine.run(), name="engine"))
        self._tasks.append(asyncio.create_task(self._announce_ready(), name="announce"))

    async def _announce_ready(self) -> None:
        """Log ``Worker ready`` once the group assigned this processor its partitions
        and they are recovered (what operators and tests wait for)."""
        while not self._serving():  # noqa: ASYNC110  (state several tasks change)
            await asyncio.sleep(0.1)
        partitions = sorted(self.engine.workers)
        log.info(
            "Worker ready",
            extra={"group": self.settings.kafka.processor_id, "partitions": partitions},
        )

    async def stop(self) -> None:
        """Finish or abandon every batch in hand, leave the group, close."""
        await self.engine.stop()
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.registry is not None:
            await self.registry.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.replies.stop(), 5.0)
        await self.http.stop()
        await self.redis.aclose()
        self.state_dir.close()
        log.info("processor stopped")


async def serve(
    settings: ProcessorSettings,
    catalog: FlowCatalog,
    sealer: CommandSealer,
    registry: DistributedRegistry | None = None,
) -> None:
    """Run a processor until SIGTERM or SIGINT."""
    configure_tracing("leadflow-processor")
    processor = Processor(settings, catalog, sealer, registry)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    starting = asyncio.create_task(processor.start())
    starting.add_done_callback(lambda task: _start_failed(task, stopping))
    await stopping.wait()
    log.info("stopping: finishing the batches in hand")
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await starting
    await processor.stop()
    if not starting.cancelled() and starting.exception() is not None:
        raise SystemExit(1)


def _start_failed(task: asyncio.Task[None], stopping: asyncio.Event) -> None:
    """A start that raised stops the process (it used to sit idle, unready, with
    the error unseen until SIGTERM)."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("the processor could not start", exc_info=task.exception())
    stopping.set()
