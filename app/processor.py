"""Composition root of the conversation processor: a faust app.

``create_app`` builds everything from settings; nothing connects until the
worker starts. The agent only decodes and dispatches (``CommandHandler`` holds
the logic); state lives in a faust Table (``rocksdb://``, backed by rocksdict, in production,
``memory://`` in tests) whose changelog is co-partitioned with ``commands``.

Edges are chosen by a :class:`~policy.thompson.ThompsonPolicy`; a task follows the
compacted ``policy-snapshots`` topic from its beginning and installs each flow's
snapshot into it (a hot swap: no restart). The first command waits (bounded) until
the snapshots that were there at start are loaded.

The worker also serves ``/healthz``, ``/readyz`` and ``/metrics`` on its own small
aiohttp server (services/processor/http.py), started when the worker first starts,
before its tables recover; commands carry their trace context in Kafka headers
(services/tracing.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from redis.asyncio import Redis

from policy.flow_snapshots import flow_checker
from policy.snapshots_kafka import SnapshotFollower
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from services.catalog import FlowCatalog
from services.distributed.command_sealing import CommandSealer
from services.distributed.redis_keystore import RedisKeyStore
from services.distributed.settings import KafkaSettings
from services.policy_port import EdgePolicy
from services.processor.events_reader import EventsReader
from services.processor.handler import CommandHandler
from services.processor.http import ProcessorHttp, Readiness, Stall, create_http_app
from services.processor.metrics import Lag, ProcessorMetrics, refresh
from services.processor.stall import STALL_EXIT_CODE, StallWatch, WorkerView
from services.tracing import Headers, configure_tracing

log = logging.getLogger(__name__)
TABLE = "conversations"


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    kafka: KafkaSettings
    redis_url: str
    store: str = "rocksdb://"
    data_dir: Path = Path(".leadflow/processor")
    standby_replicas: int = 1
    session_timeout_seconds: float = 10.0
    redis_prefix: str = "leadflow:"
    policy_mode: str = "thompson"  # or "uniform": no snapshots, every edge 1/k
    policy_load_timeout_seconds: float = 15.0
    http_host: str = "0.0.0.0"
    http_port: int = 8092  # /healthz, /readyz, /metrics; LEADFLOW_PROCESSOR_HTTP_PORT
    stall_seconds: float = 120.0  # out of service this long while Kafka answers: exit


def exit_stalled(seconds: float) -> None:
    """The stall watch fired: leave at once, for the supervisor to start a new process.

    No graceful stop: a stuck worker may hang in it, and nothing needs it (offsets
    are committed only for commands whose events are in the log)."""
    log.error(
        "out of service for %.0f s while Kafka answered; exiting with %d for the"
        " supervisor to restart this processor (LEADFLOW_PROCESSOR_STALL_SECONDS)",
        seconds,
        STALL_EXIT_CODE,
    )
    logging.shutdown()
    os._exit(STALL_EXIT_CODE)


class ProcessorApp(faust.App):
    """faust's app, with the processor's HTTP server started on the worker's first
    start (before table recovery, so /healthz answers while it recovers)."""

    http: ProcessorHttp | None = None

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.http is not None:
            await self.http.start()

    async def on_shutdown(self) -> None:
        if self.http is not None:
            await self.http.stop()
        await super().on_shutdown()


async def kafka_reachable(bootstrap: str) -> None:
    """A TCP connection to one bootstrap server (raises OSError when none answers)."""
    loop = asyncio.get_running_loop()
    last: OSError = OSError(f"no bootstrap server in {bootstrap!r}")
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        address = (host, int(port))
        try:
            sock = await loop.run_in_executor(None, socket.create_connection, address, 2.0)
            sock.close()
            return
        except OSError as exc:
            last = exc
    raise last


def create_app(
    settings: ProcessorSettings, catalog: FlowCatalog, sealer: CommandSealer
) -> faust.App:
    kafka = settings.kafka
    configure_tracing("leadflow-processor")
    app = ProcessorApp(
        kafka.processor_id,
        broker=f"leadflow://{kafka.bootstrap}",  # faust's aiokafka, short fetch wait
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_every=100,
        # how long a dead worker keeps its partitions before the group moves them
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds / 4),
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    commands = app.topic(kafka.commands_topic, partitions=kafka.partitions, **raw)
    events = app.topic(kafka.events_topic, partitions=kafka.partitions, **raw)
    replies = app.topic(kafka.replies_topic, partitions=kafka.reply_partitions, **raw)
    # the app's key and value serializers are "raw": table keys and values stay bytes
    table = app.Table(
        TABLE, default=None, partitions=kafka.partitions, key_type=bytes, value_type=bytes
    )
    redis = Redis.from_url(settings.redis_url)
    metrics = ProcessorMetrics()
    reader = EventsReader.kafka(kafka)
    policy: EdgePolicy = UniformPolicy()
    follower: SnapshotFollower | None = None
    if settings.policy_mode == "thompson":
        thompson = ThompsonPolicy()
        follower = SnapshotFollower(kafka, thompson, check=flow_checker(catalog))
        policy = thompson

        async def follow_snapshots() -> None:
            """Install every flow's snapshot, then each new one as it is published."""
            assert follower is not None
            await follower.run()

        app.task(follow_snapshots)

    async def send_events(
        key: bytes, value: bytes, partition: int, headers: Headers
    ) -> Awaitable[int]:
        """Hand the record to the producer now; the result resolves once Kafka has it."""
        pending = await events.send(
            key=key, value=value, partition=partition, headers=list(headers)
        )

        async def delivered() -> int:
            return int((await pending).offset)

        return delivered()

    async def send_reply(key: bytes, value: bytes, partition: int, headers: Headers) -> None:
        """Hand the reply to the producer without waiting for Kafka: the gate was the
        events' delivery; a lost reply makes the visitor retry, which is idempotent."""
        await replies.send(key=key, value=value, partition=partition, headers=list(headers))

    handler = CommandHandler(
        table=table,
        catalog=catalog,
        policy=policy,
        keys=RedisKeyStore(redis, prefix=settings.redis_prefix),
        send_events=send_events,
        send_reply=send_reply,
        read_events_after=reader.after,
        on_fatal=app.crash,
        open_command=sealer.open,
        metrics=metrics,
    )
    caught_up: set[int] = set()
    positions: dict[int, int] = {}  # per commands partition: the next offset to read
    snapshots_waited = follower is None

    @app.on_partitions_assigned.connect
    async def forget_catch_up(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """A (re)assigned partition is caught up again before its next command."""
        assigned: set[Any] = args[0] if args else kwargs.get("assigned", set())
        caught_up.difference_update(tp.partition for tp in assigned)
        for tp in assigned:  # its position is unknown until it reads again
            if tp.topic == kafka.commands_topic:
                positions.pop(tp.partition, None)

    @app.agent(commands)
    async def process(stream: Any) -> AsyncIterator[None]:
        """Decode and dispatch only: the handler decides and completes in order. Offsets
        are acked by the handler once a command's events are in the log (noack stream)."""
        nonlocal snapshots_waited
        async for event in stream.noack().events():
            if not snapshots_waited:
                assert follower is not None
                await follower.wait_loaded(settings.policy_load_timeout_seconds)
                snapshots_waited = True
            partition = event.message.partition
            if partition not in caught_up:
                await handler.drained(partition)
                applied = await handler.catch_up(partition)
                caught_up.add(partition)
                if applied:
                    log.info(
                        "caught up from the events log",
                        extra={"partition": partition, "records": applied},
                    )
            positions[partition] = event.message.offset + 1
            context = contextvars.copy_context()
            await handler.submit(partition, event.value, event.ack, context.run, event.headers)
            yield None

    started = False

    async def worker_started() -> None:
        """faust starts tasks once the tables are recovered: the worker can serve."""
        nonlocal started
        started = True

    app.task(worker_started)

    def lags() -> Mapping[int, Lag]:
        """Per assigned commands partition; none while the consumer is not running."""
        out: dict[int, Lag] = {}
        try:
            assigned = set(app.consumer.assignment())
        except Exception:  # not started yet, or stopping: nothing to report
            return out
        for tp in assigned:
            if tp.topic != kafka.commands_topic:
                continue
            try:
                highwater: int | None = app.consumer.highwater(tp)
            except Exception:  # not fetched yet, or the consumer is restarting
                highwater = None
            out[tp.partition] = Lag(highwater, positions.get(tp.partition))
        return out

    def worker_view() -> WorkerView:
        try:
            assigned = len(app.consumer.assignment())
        except Exception:  # not started yet, or stopping: nothing assigned
            assigned = 0
        return WorkerView(started, bool(app.rebalancing), bool(app.in_recovery), assigned)

    readiness = Readiness(
        worker_ready=lambda: started and not app.rebalancing and not app.in_recovery,
        checks={"kafka": lambda: kafka_reachable(kafka.bootstrap), "redis": redis.ping},
        stall=Stall(StallWatch(settings.stall_seconds), worker_view, exit_stalled),
    )
    app.http = ProcessorHttp(
        create_http_app(
            metrics,
            readiness,
            lambda: refresh(
                metrics,
                lags,
                policy.installed if isinstance(policy, ThompsonPolicy) else tuple,
                handler.in_flight,
            ),
        ),
        readiness,
        host=settings.http_host,
        port=settings.http_port,
    )
    return app
