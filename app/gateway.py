"""Composition root of a gateway in the distributed mode (Kafka between the
gateway and the processors). The same gateway app as the embedded mode, with
the Kafka command bus; it stays up while Kafka is away and serves again as soon
as Kafka returns (commands meanwhile get a retryable ``unavailable``).

With a flow registry (:mod:`app.registry_wiring`) its catalog is the registry's:
ready once the registry is loaded, and new versions are served without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web

from app.registry_wiring import registry_lifecycle
from gateway.app import create_gateway_app
from gateway.beacon_relay import BEACON_URL_ENV, BeaconRelay, add_beacon_relay
from gateway.config import GatewaySettings
from gateway.connection import GatewayContext
from gateway.kafka_bus import KafkaCommandBus
from gateway.metrics import GatewayMetrics
from gateway.tokens import ResumeTokens
from services.beacons import CLIENT_HEADER_ENV, BeaconLimiter
from services.catalog import FlowCatalog
from services.distributed.command_sealing import CommandSealer
from services.distributed.settings import KafkaSettings
from services.distributed.topics import TopicMismatch, ensure_topics
from services.pushes import Pushes
from services.registry.distributed import DistributedRegistry
from services.sites import Site
from services.tracing import configure_tracing

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0


def init_app(
    gateway: GatewaySettings,
    kafka: KafkaSettings,
    ordinal: int,
    sites: dict[str, Site],
    catalog: FlowCatalog,
    sealer: CommandSealer,
    registry: DistributedRegistry | None = None,
) -> web.Application:
    configure_tracing("leadflow-gateway")
    bus = KafkaCommandBus(kafka, ordinal, sealer)
    bus.pushes = Pushes()
    context = GatewayContext(
        settings=replace(gateway, instance=str(ordinal)),
        sites=sites,
        catalog=catalog,
        bus=bus,
        tokens=ResumeTokens(
            gateway.resume_secret, gateway.resume_ttl_seconds, gateway.previous_resume_secrets
        ),
        metrics=GatewayMetrics(),
    )
    if registry is not None:
        registry.bind_metrics(context.metrics.registry)
    app = create_gateway_app(
        context,
        ready=lambda: bus.healthy and (registry is None or registry.loaded),
        pushes=bus.pushes,
    )
    beacon_url = os.environ.get(BEACON_URL_ENV)
    if beacon_url:  # POST /beacon, relayed to the projector (gateway.beacon_relay)
        limiter = BeaconLimiter(gateway.rate_per_second, gateway.rate_burst)
        header = os.environ.get(CLIENT_HEADER_ENV) or None
        add_beacon_relay(app, BeaconRelay(beacon_url, limiter, header))

    async def connect_until_up() -> None:
        while True:
            try:
                await ensure_topics(kafka)
                await bus.start()
                log.info("connected to Kafka", extra={"ordinal": ordinal})
                return
            except TopicMismatch as exc:
                log.error("topics do not match this deployment, not serving: %s", exc)
                await bus.stop()
                await asyncio.sleep(RETRY_SECONDS * 30)
            except Exception as exc:  # broker not there yet: keep serving, keep trying
                log.warning("Kafka unavailable, retrying: %s", exc)
                await bus.stop()
                await asyncio.sleep(RETRY_SECONDS)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        connecting = asyncio.create_task(connect_until_up(), name="kafka-connect")
        yield
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await bus.stop()

    app.cleanup_ctx.append(lifecycle)
    if registry is not None:
        app.cleanup_ctx.append(registry_lifecycle(registry))
    return app
