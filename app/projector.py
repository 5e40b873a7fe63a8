"""Composition root of the projector service (``leadflow run projector``).

It follows the ``events`` topic into Redis (:mod:`projector.live`, as the Kafka
consumer group of :func:`events_follower`) and serves ``/healthz``, ``/readyz``,
``/metrics`` and the read API under ``/api/v1`` (with the deliveries the
delivery services keep in the same Redis).
Nothing connects before the app starts (``cleanup_ctx``). With a flow registry
(:mod:`app.registry_wiring`) its catalog is the registry's, and it is ready once
the registry is loaded.

| variable | default | meaning |
|---|---|---|
| LEADFLOW_PROJECTOR_HOST | 127.0.0.1 | listen address of its HTTP server |
| LEADFLOW_PROJECTOR_PORT | 8090 | listen port |
| LEADFLOW_REDIS_PREFIX | leadflow: | prefix of every Redis key (read models, conversation keys) |
| LEADFLOW_PROJECTOR_CACHE | 20000 | conversation views kept in memory |
| LEADFLOW_ADMIN_API_KEY_SHA256 | (none) | SHA-256 of a key that may read every site |
| LEADFLOW_STUDIO_WIDGET_URL | (none) | gateways' public URL: the studio preview's widget |
| LEADFLOW_POLICY_API_URL | (none) | policy API (``http://policy:8091``) for the studio |
| LEADFLOW_BEACON_CLIENT_HEADER | (none) | visitor's address behind a proxy (``X-Real-IP``) |

It also serves the studio at ``/studio/`` (docs/admin-api.md, "Studio").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka.errors import KafkaError

from app.registry_wiring import registry_lifecycle
from projector.admin_api import add_flow_admin_routes
from projector.api import create_read_api
from projector.deliveries_api import add_delivery_routes
from projector.live import LiveProjection
from projector.metrics import ProjectorMetrics
from projector.policy_proxy import PolicyProxySettings, add_policy_proxy
from projector.policy_relay import POLICY_URL_ENV, policy_base_url
from projector.redis_store import RedisReadModel
from projector.studio import add_studio_routes
from projector.studio_config import NO_WIDGET, WIDGET_URL_ENV, StudioConfig, studio_config_from_env
from services.beacon_http import BeaconEndpoint, add_beacon_route
from services.beacons import CLIENT_HEADER_ENV
from services.catalog import FlowCatalog
from services.distributed.kafka_follower import MIB, KafkaLogFollower
from services.distributed.kafka_probe import KafkaProbe
from services.distributed.redis_beacon_counts import RedisBeaconCounts
from services.distributed.redis_client import redis_client
from services.distributed.redis_deliveries import RedisDeliveryStore
from services.distributed.redis_keystore import RedisKeyStore
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.health import HealthChecks, Status, add_health_routes
from services.http_auth import check_admin_sha256
from services.log_follow import follow
from services.preview_tokens import preview_tokens_from_env
from services.registry.distributed import DistributedRegistry
from services.sites import Site

log = logging.getLogger(__name__)
PROBE_SECONDS = 1.0
STOP_SECONDS = 10.0  # at shutdown, the batch in hand may take this long to finish


@dataclass(frozen=True)
class ProjectorSettings:
    kafka: KafkaSettings
    redis_url: str
    host: str = "127.0.0.1"
    port: int = 8090
    redis_prefix: str = "leadflow:"
    cache_size: int = 20_000
    admin_key_sha256: str | None = None
    studio: StudioConfig = NO_WIDGET  # the studio's preview: no widget unless configured
    policy_api_url: str | None = None  # validated base URL, relayed for the studio
    beacon_client_header: str | None = None  # e.g. X-Real-IP behind the ingress

    @classmethod
    def from_env(cls, redis_url: str, env: Mapping[str, str] | None = None) -> ProjectorSettings:
        env = os.environ if env is None else env
        return cls(
            kafka=KafkaSettings.from_env(env),
            redis_url=redis_url,
            host=env.get("LEADFLOW_PROJECTOR_HOST", "127.0.0.1"),
            port=int(env.get("LEADFLOW_PROJECTOR_PORT", "8090")),
            redis_prefix=env.get("LEADFLOW_REDIS_PREFIX", "leadflow:"),
            cache_size=int(env.get("LEADFLOW_PROJECTOR_CACHE", "20000")),
            admin_key_sha256=check_admin_sha256(env.get("LEADFLOW_ADMIN_API_KEY_SHA256") or None),
            studio=studio_config_from_env(env.get(WIDGET_URL_ENV)),
            policy_api_url=(
                policy_base_url(env[POLICY_URL_ENV]) if env.get(POLICY_URL_ENV) else None
            ),
            beacon_client_header=env.get(CLIENT_HEADER_ENV) or None,
        )


@dataclass
class ProjectorRuntime:
    metrics: ProjectorMetrics = field(default_factory=ProjectorMetrics)
    projection: LiveProjection | None = None
    consuming: bool = False
    store_up: bool = False
    kafka_up: bool = False
    registry: DistributedRegistry | None = None

    def registry_loaded(self) -> bool:
        return self.registry is None or self.registry.loaded

    def ready(self) -> bool:
        stalled = self.projection is not None and self.projection.stalled is not None
        return (
            self.consuming
            and self.store_up
            and self.kafka_up
            and not stalled
            and self.registry_loaded()
        )


RUNTIME = web.AppKey("runtime", ProjectorRuntime)


def readiness(runtime: ProjectorRuntime) -> Status:
    """Ready when the consumer runs, the store answers and nothing stalled it."""
    if runtime.ready():
        return Status(True)
    detail: dict[str, object] = {
        "store": runtime.store_up,
        "kafka": runtime.kafka_up,
        "consuming": runtime.consuming,
        "flow_registry_loaded": runtime.registry_loaded(),
    }
    stalled = runtime.projection.stalled if runtime.projection else None
    if stalled:
        detail["stalled"] = stalled
    return Status(False, detail)


def events_follower(kafka: KafkaSettings) -> KafkaLogFollower:
    """The ``events`` log as the projectors follow it: the consumer group
    ``{prefix}projector`` (each partition has one owner among them)."""
    return KafkaLogFollower(
        kafka,
        kafka.events_topic,
        group_id=f"{kafka.prefix}projector",
        max_partition_fetch_bytes=4 * MIB,
    )


async def _consume(
    projection: LiveProjection, follower: KafkaLogFollower, stopping: asyncio.Event
) -> None:
    """Project batch after batch until ``stopping`` is set (then the current batch
    is finished: projected, frontier written, offsets committed) and leave the
    group. A record of a newer format stops only its partition (the projection
    says which, readiness turns 503), the others go on."""
    while not stopping.is_set():
        try:
            await follow(
                follower,
                projection.handle,
                projection.positions,
                stopping=stopping,
                retry_on=(KafkaError, OSError),
            )
        except Exception:
            log.exception("projector step failed; retrying")
            await asyncio.sleep(1.0)


async def _probe(runtime: ProjectorRuntime, store: RedisReadModel, kafka: KafkaProbe) -> None:
    try:
        while True:
            runtime.store_up = await store.ping()
            runtime.metrics.store_up.set(1 if runtime.store_up else 0)
            runtime.kafka_up = await kafka.answers()
            await asyncio.sleep(PROBE_SECONDS)
    finally:
        await kafka.close()


def init_app(
    settings: ProjectorSettings,
    sites: Mapping[str, Site],
    catalog: FlowCatalog,
    registry: DistributedRegistry | None = None,
) -> web.Application:
    app = web.Application()
    runtime = ProjectorRuntime(registry=registry)
    app[RUNTIME] = runtime
    if registry is not None:
        registry.bind_metrics(runtime.metrics.registry)
    redis = redis_client(settings.redis_url)  # lazy: connects on first command
    store = RedisReadModel(redis, prefix=settings.redis_prefix)
    keys = RedisKeyStore(redis, prefix=settings.redis_prefix)
    add_health_routes(app, HealthChecks(runtime.metrics.registry, lambda: readiness(runtime)))
    # the widget's views and opens: POST /beacon here, where the read models are
    # (route /beacon of the visitors' host to this port: deploy/k8s, docs/distributed.md)
    beacons = RedisBeaconCounts(redis, settings.redis_prefix)
    endpoint = BeaconEndpoint(beacons, sites, catalog, client_header=settings.beacon_client_header)
    add_beacon_route(app, endpoint)
    read_api = create_read_api(store, keys, sites, catalog, settings.admin_key_sha256, beacons)
    # where the delivery services (leadflow run delivery) keep the deliveries, in the same Redis
    add_delivery_routes(read_api, RedisDeliveryStore(redis, settings.redis_prefix))
    if registry is not None:  # publish and activate flow versions (docs/admin-api.md)
        previews = preview_tokens_from_env(os.environ)  # the gateways' resume secret
        add_flow_admin_routes(read_api, registry.feed, previews)
    app.add_subapp("/api/v1", read_api)
    add_studio_routes(app, config=settings.studio)  # /studio/ (docs/admin-api.md, Studio)
    if settings.policy_api_url is not None:  # the studio's policy shares
        proxy = PolicyProxySettings(settings.policy_api_url, settings.admin_key_sha256)
        add_policy_proxy(app, proxy)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await ensure_topics(settings.kafka)
        follower = events_follower(settings.kafka)
        projection = LiveProjection(
            follower, store, runtime.metrics, cache_size=settings.cache_size
        )
        runtime.projection = projection
        probe = KafkaProbe(settings.kafka)
        prober = asyncio.create_task(_probe(runtime, store, probe), name="dependency-probe")
        runtime.consuming = True
        stopping = asyncio.Event()
        consumer = asyncio.create_task(_consume(projection, follower, stopping), name="projector")
        yield
        runtime.consuming = False
        stopping.set()  # SIGTERM: finish the batch in hand, then leave the group
        try:
            await asyncio.wait_for(asyncio.shield(consumer), STOP_SECONDS)
        except TimeoutError:
            log.warning("the last batch did not finish; it is read again by the next owner")
        for task in (consumer, prober):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await follower.stop()  # left the group already, unless the batch was cut short
        await redis.aclose()
        log.info("projector stopped")

    app.cleanup_ctx.append(lifecycle)
    if registry is not None:
        app.cleanup_ctx.append(registry_lifecycle(registry))
    return app
