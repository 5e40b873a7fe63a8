"""``leadflow run gateway|processor|projector|policy|delivery`` and ``leadflow topics``: the
distributed mode."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from services.distributed.command_sealing import (
    MIN_SECRET_CHARS,
    CommandSealer,
    command_sealer_from_env,
)
from services.limits import (
    collector_threshold,
    listen_backlog,
    raise_open_files,
    tune_collector,
)
from services.sites import Site

if TYPE_CHECKING:  # the services' modules load aiokafka: imported where they run
    from services.catalog import FlowCatalog
    from services.distributed.settings import KafkaSettings
    from services.registry.distributed import DistributedRegistry


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run one service of the distributed mode (Kafka)")
    run.add_argument("service", choices=["gateway", "processor", "projector", "policy", "delivery"])
    sub.add_parser("topics", help="create the Kafka topics (idempotent) and check them")


def _flows_and_sites(
    kafka: KafkaSettings, service: str
) -> tuple[FlowCatalog, dict[str, Site], DistributedRegistry]:
    """The service's flow registry over an empty catalog it fills: the flow files of
    ``LEADFLOW_FLOWS_DIR`` are read (and refused with every error) now, published
    into the registry at start if their content is new; the sites file's flows are
    checked against registry and files once the registry is loaded."""
    from app.registry_wiring import distributed_registry
    from services.catalog import EXAMPLE_FLOWS_DIR

    flows_dir = Path(os.environ.get("LEADFLOW_FLOWS_DIR", str(EXAMPLE_FLOWS_DIR)))
    sites_file = os.environ.get("LEADFLOW_SITES_FILE")
    registry = distributed_registry(
        kafka, service, flows_dir, Path(sites_file) if sites_file else None
    )
    return registry.catalog, dict(registry.sites), registry


def _command_sealer() -> CommandSealer:
    """The key that keeps lead fields sealed on the commands topic; the same on every
    gateway and processor. Refuses to start without one."""
    try:
        return command_sealer_from_env(os.environ)
    except ValueError:
        print(
            f"leadflow: set LEADFLOW_COMMAND_SECRET ({MIN_SECRET_CHARS}+ characters, the same "
            "on every gateway and processor) for the distributed mode; every secret in "
            f"LEADFLOW_COMMAND_SECRET_PREVIOUS needs {MIN_SECRET_CHARS}+ characters too",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def run_gateway() -> int:
    from aiohttp import web

    from app.gateway import init_app
    from gateway.config import GatewaySettings
    from gateway.shutdown import ShutdownSettings, drain_on_sigterm
    from services.distributed.settings import KafkaSettings, gateway_ordinal_from_env
    from services.logs import configure_logging

    secret = os.environ.get("LEADFLOW_RESUME_SECRET", "")
    if len(secret) < 16:
        print(
            "leadflow: set LEADFLOW_RESUME_SECRET (16+ characters, the same on every "
            "gateway) for the distributed mode",
            file=sys.stderr,
        )
        return 2
    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    sealer = _command_sealer()
    kafka = KafkaSettings.from_env()
    try:
        gateway = GatewaySettings.from_env(secret.encode())
        shutdown = ShutdownSettings.from_env()
    except ValueError as exc:
        print(f"leadflow: cannot start the gateway: {exc}", file=sys.stderr)
        return 2
    ordinal = gateway_ordinal_from_env(kafka.reply_partitions)
    catalog, sites, registry = _flows_and_sites(kafka, "gateway")
    app = init_app(gateway, kafka, ordinal, sites, catalog, sealer, registry)
    shutdown_timeout = drain_on_sigterm(app, shutdown)
    raise_open_files("gateway")  # after the checks: a socket or connection per fd
    print(
        f"Leadflow gateway {ordinal} on http://{gateway.host}:{gateway.port}/ "
        f"(Kafka {kafka.bootstrap}; /metrics on port {gateway.metrics_port or 'none'})",
        flush=True,
    )
    web.run_app(
        app,
        host=gateway.host,
        port=gateway.port,
        print=None,
        shutdown_timeout=shutdown_timeout,
        backlog=listen_backlog("gateway", gateway.listen_backlog),
    )
    return 0


def run_processor() -> int:
    from app.processor import ProcessorSettings, serve
    from policy.settings import PolicySettings
    from services.distributed.settings import KafkaSettings, redis_url_from_env
    from services.distributed.topics import ensure_topics
    from services.logs import configure_logging
    from services.processor.http import address_from_env
    from services.processor.settings import EngineSettings
    from services.processor.stall import stall_seconds_from_env
    from services.processor.state_cache import DEFAULT_CAPACITY

    sealer = _command_sealer()
    kafka = KafkaSettings.from_env()
    try:
        policy = PolicySettings.from_env()
        http_host, http_port = address_from_env(os.environ)
        stall_seconds = stall_seconds_from_env(os.environ)
        engine = EngineSettings(
            max_batch=_positive_int("LEADFLOW_PROCESSOR_MAX_BATCH", 500),
            drain_seconds=_positive_float("LEADFLOW_PROCESSOR_DRAIN_SECONDS", 3.0),
            checkpoint_seconds=_positive_float("LEADFLOW_PROCESSOR_CHECKPOINT_SECONDS", 2.0),
        )
        session_timeout = _positive_float("LEADFLOW_PROCESSOR_SESSION_TIMEOUT", 10.0)
        state_cache = _positive_int("LEADFLOW_PROCESSOR_STATE_CACHE", DEFAULT_CAPACITY)
        state_dir = os.environ.get("LEADFLOW_PROCESSOR_STATE_DIR", "").strip()
    except ValueError as exc:
        print(f"leadflow: cannot start the processor: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    settings = ProcessorSettings(
        kafka=kafka,
        redis_url=redis_url_from_env(),
        session_timeout_seconds=session_timeout,
        redis_prefix=os.environ.get("LEADFLOW_REDIS_PREFIX", "leadflow:"),
        policy_mode=policy.mode,
        policy_load_timeout_seconds=policy.load_timeout_seconds,
        http_host=http_host,
        http_port=http_port,
        stall_seconds=stall_seconds,
        engine=engine,
        state_cache=state_cache,
        state_dir=Path(state_dir) if state_dir else None,
    )
    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    raise_open_files("processor")  # after the checks: a socket or connection per fd
    asyncio.run(ensure_topics(kafka))
    catalog, _, registry = _flows_and_sites(kafka, "processor")
    print(f"Leadflow processor {kafka.processor_id} (Kafka {kafka.bootstrap})", flush=True)
    asyncio.run(serve(settings, catalog, sealer, registry))
    return 0


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be 1 or more")
    return value


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _redis_host(url: str) -> str:
    """host:port of a Redis URL: never print its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def run_projector() -> int:
    from aiohttp import web

    from app.projector import ProjectorSettings, init_app
    from services.distributed.settings import redis_url_from_env
    from services.logs import configure_logging

    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    try:
        settings = ProjectorSettings.from_env(redis_url_from_env())
    except ValueError as exc:
        print(f"leadflow: cannot start the projector: {exc}", file=sys.stderr)
        return 2
    catalog, sites, registry = _flows_and_sites(settings.kafka, "projector")
    app = init_app(settings, sites, catalog, registry)
    raise_open_files("projector")  # after the checks: a socket or connection per fd
    print(
        f"Leadflow projector on http://{settings.host}:{settings.port}/ "
        f"(Kafka {settings.kafka.bootstrap}, Redis {_redis_host(settings.redis_url)})",
        flush=True,
    )
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=5.0)
    return 0


def run_delivery() -> int:
    from aiohttp import web

    from app.delivery import DeliveryServiceSettings, init_app
    from services.delivery.config import DeliveryConfigError
    from services.distributed.settings import redis_url_from_env
    from services.logs import configure_logging

    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    from services.distributed.settings import KafkaSettings

    catalog, sites, registry = _flows_and_sites(KafkaSettings.from_env(), "delivery")
    try:
        settings = DeliveryServiceSettings.from_env(redis_url_from_env(), os.environ)
        app = init_app(settings, sites, catalog, os.environ, registry)
    except (DeliveryConfigError, ValueError) as exc:
        print(f"leadflow: cannot start the delivery service: {exc}", file=sys.stderr)
        return 2
    raise_open_files("delivery")  # after the checks: a socket or connection per fd
    print(
        f"Leadflow delivery on http://{settings.host}:{settings.port}/ "
        f"(Kafka {settings.kafka.bootstrap}, Redis {_redis_host(settings.redis_url)})",
        flush=True,
    )
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=20.0)
    return 0


def run_policy() -> int:
    from aiohttp import web

    from app.policy import init_app
    from policy.settings import PolicySettings
    from services.distributed.settings import KafkaSettings
    from services.http_auth import check_admin_sha256
    from services.logs import configure_logging

    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    try:
        settings = PolicySettings.from_env()
        admin = check_admin_sha256(os.environ.get("LEADFLOW_ADMIN_API_KEY_SHA256") or None)
    except ValueError as exc:
        print(f"leadflow: cannot start the policy service: {exc}", file=sys.stderr)
        return 2
    kafka = KafkaSettings.from_env()
    catalog, _, registry = _flows_and_sites(kafka, "policy")
    app = init_app(settings, kafka, catalog, admin, registry)
    raise_open_files("policy")  # after the checks: a socket or connection per fd
    print(
        f"Leadflow policy service on http://{settings.host}:{settings.port}/ "
        f"(Kafka {kafka.bootstrap})",
        flush=True,
    )
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=5.0)
    return 0


def create_topics() -> int:
    from services.distributed.settings import KafkaSettings
    from services.distributed.topics import all_topic_specs, ensure_topics

    kafka = KafkaSettings.from_env()
    asyncio.run(ensure_topics(kafka))
    for spec in all_topic_specs(kafka):
        print(f"ok: {spec.name} ({spec.partitions} partitions)")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.command == "topics":
        return create_topics()
    try:
        tune_collector(args.service, collector_threshold(os.environ))
    except ValueError as exc:
        print(f"leadflow: cannot start the {args.service}: {exc}", file=sys.stderr)
        return 2
    if args.service == "projector":
        return run_projector()
    if args.service == "policy":
        return run_policy()
    if args.service == "delivery":
        return run_delivery()
    return run_gateway() if args.service == "gateway" else run_processor()
