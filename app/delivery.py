"""Lead delivery's composition: the worker's parts for both modes, and the
delivery service of the distributed mode (``leadflow run delivery``).

:func:`build_delivery` resolves the sites' destinations (secrets from the
environment or files; a mistake raises
:class:`~services.delivery.config.DeliveryConfigError` naming the site, the
destination and the field) and wires the senders, the intake and the
dispatcher around a log follower and a store. ``leadflow serve`` runs it on
the SQLite log and ``deliveries.db`` (:mod:`app.embedded`); :func:`init_app`
runs it on the ``events`` topic, in the consumer group ``{prefix}delivery``,
with its state in Redis, and serves ``/healthz``, ``/readyz`` and
``/metrics``. Several delivery services share the partitions (the group) and
the due deliveries (claims in Redis).

| variable | default | meaning |
|---|---|---|
| LEADFLOW_DELIVERY_HOST | 127.0.0.1 | listen address of its HTTP server |
| LEADFLOW_DELIVERY_PORT | 8093 | listen port |
| LEADFLOW_REDIS_PREFIX | leadflow: | prefix of every Redis key |

and the delivery settings of :mod:`services.delivery.settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiokafka.errors import KafkaError
from redis.asyncio import Redis

from app.registry_wiring import registry_lifecycle
from schemas.batches import decode_batch
from schemas.events import Event
from services.catalog import FlowCatalog
from services.delivery.config import Destination, destinations_of
from services.delivery.dispatcher import Dispatcher
from services.delivery.email import EmailSender
from services.delivery.guarded_http import GuardedHttp
from services.delivery.log_intake import DecodeRecord, LogIntake, ReadConversation
from services.delivery.metrics import DeliveryMetrics
from services.delivery.payload import framing as payload_framing
from services.delivery.senders import Sender
from services.delivery.settings import DeliveryEnv
from services.delivery.slack import SlackSender
from services.delivery.ssrf import AddressGuard
from services.delivery.store import DeliveryStore
from services.delivery.webhook import WebhookSender
from services.delivery.worker import DeliveryWorker
from services.distributed.kafka_follower import MIB, KafkaLogFollower
from services.distributed.kafka_probe import KafkaProbe
from services.distributed.redis_client import redis_client
from services.distributed.redis_deliveries import RedisDeliveryStore
from services.distributed.redis_keystore import RedisKeyStore
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.health import HealthChecks, Status, add_health_routes
from services.log_follower import LogFollower, LogRecord, decode_record
from services.ports import KeyStore
from services.registry.distributed import DistributedRegistry
from services.sites import Site

log = logging.getLogger(__name__)
PROBE_SECONDS = 1.0


def read_secret_file(path: str) -> str:
    return Path(path).read_text("utf-8")


def resolve_destinations(
    sites: Mapping[str, Site], environ: Mapping[str, str], env: DeliveryEnv
) -> dict[tuple[str, str], Destination]:
    """Every destination, checked; raises DeliveryConfigError at start-up."""
    return destinations_of(sites.values(), environ, read_secret_file, env.config)


@dataclass
class DeliveryParts:
    """A built worker and what to close after it."""

    worker: DeliveryWorker
    senders: Mapping[str, Sender]
    metrics: DeliveryMetrics

    async def close(self) -> None:
        for sender in self.senders.values():
            with contextlib.suppress(Exception):
                await sender.close()


def build_delivery(
    follower: LogFollower,
    decode: DecodeRecord,
    store: DeliveryStore,
    keys: KeyStore,
    catalog: FlowCatalog,
    destinations: Mapping[tuple[str, str], Destination],
    env: DeliveryEnv,
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    metrics: DeliveryMetrics | None = None,
    history: ReadConversation | None = None,
) -> DeliveryParts:
    """``history``: the log read by conversation, when it can be (the intake then
    keeps no conversation states: :mod:`services.delivery.log_intake`)."""
    metrics = DeliveryMetrics() if metrics is None else metrics
    guard = AddressGuard(env.allow_networks)
    http = GuardedHttp(guard, env.timeout_seconds)
    senders: dict[str, Sender] = {
        "webhook": WebhookSender(http),
        "slack": SlackSender(http),
        "email": EmailSender(guard, env.timeout_seconds),
    }
    framing = payload_framing(catalog, env.public_url)  # fixed per delivery at intake
    intake = LogIntake(store, decode, destinations, metrics, framing=framing, history=history)
    dispatcher = Dispatcher(
        store, destinations, senders, keys, catalog, env.public_url, metrics, env.dispatch
    )
    worker = DeliveryWorker(follower, intake, dispatcher, store, metrics, retry_on=retry_on)
    return DeliveryParts(worker, senders, metrics)


# -- the distributed mode's delivery service --------------------------------------


@dataclass(frozen=True)
class DeliveryServiceSettings:
    kafka: KafkaSettings
    redis_url: str
    delivery: DeliveryEnv
    host: str = "127.0.0.1"
    port: int = 8093
    redis_prefix: str = "leadflow:"

    @classmethod
    def from_env(cls, redis_url: str, env: Mapping[str, str]) -> DeliveryServiceSettings:
        port = env.get("LEADFLOW_DELIVERY_PORT", "8093")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"LEADFLOW_DELIVERY_PORT must be a port (1 to 65535), not {port!r}")
        return cls(
            kafka=KafkaSettings.from_env(env),
            redis_url=redis_url,
            delivery=DeliveryEnv.from_env(env),
            host=env.get("LEADFLOW_DELIVERY_HOST", "127.0.0.1"),
            port=int(port),
            redis_prefix=env.get("LEADFLOW_REDIS_PREFIX", "leadflow:"),
        )


def batch_events(name: str) -> DecodeRecord:
    def decode(record: LogRecord) -> list[Event]:
        return list(decode_record(name, record, decode_batch).events)

    return decode


@dataclass
class DeliveryRuntime:
    delivery: DeliveryParts | None = None
    store_up: bool = False
    kafka_up: bool = False


RUNTIME = web.AppKey("delivery_runtime", DeliveryRuntime)


def readiness(runtime: DeliveryRuntime) -> Status:
    worker = runtime.delivery.worker if runtime.delivery else None
    failure = worker.failure if worker else None
    following = worker is not None and worker.following
    if following and runtime.store_up and runtime.kafka_up and failure is None:
        return Status(True)
    detail: dict[str, object] = {
        "store": runtime.store_up,
        "kafka": runtime.kafka_up,
        "following": following,
    }
    if failure:
        detail["stopped_at"] = failure
    return Status(False, detail)


async def _probe(runtime: DeliveryRuntime, redis: Redis, kafka: KafkaProbe) -> None:
    try:
        while True:
            try:
                runtime.store_up = bool(await redis.ping())
            except Exception:
                runtime.store_up = False
            runtime.kafka_up = await kafka.answers()
            await asyncio.sleep(PROBE_SECONDS)
    finally:
        await kafka.close()


async def _run_worker(delivery: DeliveryParts, registry: DistributedRegistry | None) -> None:
    """The worker, once the registry is loaded (unless stopped before)."""
    worker = delivery.worker
    if registry is not None:
        waits = [
            asyncio.ensure_future(registry.wait_loaded()),
            asyncio.ensure_future(worker.stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if worker.stopping.is_set():
            return
    await worker.run()


def init_app(
    settings: DeliveryServiceSettings,
    sites: Mapping[str, Site],
    catalog: FlowCatalog,
    environ: Mapping[str, str],
    registry: DistributedRegistry | None = None,
) -> web.Application:
    """Raises DeliveryConfigError before anything connects when a destination is wrong.
    With a flow registry, the worker starts once the registry is loaded (a delivery
    is framed with its flow version's texts)."""
    destinations = resolve_destinations(sites, environ, settings.delivery)
    app = web.Application()
    runtime = DeliveryRuntime()
    app[RUNTIME] = runtime
    metrics = DeliveryMetrics()
    if registry is not None:
        registry.bind_metrics(metrics.registry)
        app.cleanup_ctx.append(registry_lifecycle(registry))
    add_health_routes(app, HealthChecks(metrics.registry, lambda: readiness(runtime)))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        redis = redis_client(settings.redis_url)
        store = RedisDeliveryStore(redis, settings.redis_prefix)
        await store.start()
        kafka = settings.kafka
        await ensure_topics(kafka)
        follower = KafkaLogFollower(
            kafka,
            kafka.events_topic,
            group_id=f"{kafka.prefix}delivery",
            max_partition_fetch_bytes=4 * MIB,
        )
        delivery = build_delivery(
            follower,
            batch_events(follower.name),
            store,
            RedisKeyStore(redis, prefix=settings.redis_prefix),
            catalog,
            destinations,
            settings.delivery,
            retry_on=(KafkaError, OSError),
            metrics=metrics,
        )
        runtime.delivery = delivery
        prober = asyncio.create_task(
            _probe(runtime, redis, KafkaProbe(kafka)), name="dependency-probe"
        )
        running = asyncio.create_task(_run_worker(delivery, registry), name="delivery")
        log.info(
            "delivery worker started",
            extra={"destinations": len(destinations), "sites": len(sites)},
        )
        yield
        await delivery.worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        await delivery.close()
        await store.close()
        await redis.aclose()
        log.info("delivery worker stopped")

    app.cleanup_ctx.append(lifecycle)
    return app
