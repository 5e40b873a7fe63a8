"""Everything the benchmark talks to, started here and stopped here: a Kafka broker
(``KAFKA_BOOTSTRAP_SERVERS`` if set, else the local broker of ``kafka.sh``), Redis
(``REDIS_URL`` if set, else ``redis-server``), one processor and the gateways,
all on topics of a fresh prefix."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from bench.infra import kafka_for_bench, redis_for_bench
from bench.kafka.config import Config
from tests.support.distributed import Cluster, Service
from tests.support.kafka import LocalKafka
from tests.support.redis_server import LocalRedis

log = logging.getLogger(__name__)
_PROBLEM = re.compile(r'"level": ?"(error|critical)"|\bERROR\b|\bCRITICAL\b|Traceback')


@dataclass
class Stack:
    config: Config
    workdir: Path
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}.")
    bootstrap: str = ""
    redis_url: str = ""
    broker: LocalKafka | None = None
    redis: LocalRedis | None = None
    cluster: Cluster | None = None
    processor: Service | None = None
    gateways: list[Service] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log_offsets: dict[str, int] = field(default_factory=dict)  # log lines before the runs

    def start(self) -> Stack:
        """Start what is not given; raise (after stopping what started) on failure."""
        try:
            self._start_kafka()
            self._start_redis()
            self._start_services()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_kafka(self) -> None:
        self.bootstrap, self.broker = kafka_for_bench(self.workdir, self.notes)

    def _start_redis(self) -> None:
        self.redis_url, self.redis = redis_for_bench(self.workdir, self.notes)

    def _env(self) -> dict[str, str]:
        """Cluster's test settings, but the production command timeout (10 s, not 5);
        a bench visitor plays conversation after conversation on one socket, far more
        than the few a minute a real one may start."""
        return {
            "LEADFLOW_LOG_LEVEL": self.config.log_level,
            "LEADFLOW_COMMAND_TIMEOUT_SECONDS": "10",
            "LEADFLOW_STARTS_PER_MINUTE": "1000000",
            **self.config.extra_env,
        }

    def _start_services(self) -> None:
        cfg = self.config
        self.cluster = Cluster(
            self.bootstrap,
            self.redis_url,
            self.workdir,
            self.prefix,
            partitions=cfg.partitions,
            reply_partitions=cfg.reply_partitions,
        )
        print(f"starting the processor and {cfg.gateways} gateway(s) ...", flush=True)
        self.processor = self.cluster.processor()
        self.processor.env.update(self._env())
        _ports_free_everywhere(self.processor, "LEADFLOW_PROCESSOR_HTTP_PORT")
        self.processor.start()
        for ordinal in range(cfg.gateways):
            gateway = self.cluster.gateway(ordinal)
            gateway.env.update(self._env())
            _ports_free_everywhere(gateway, "LEADFLOW_PORT", "LEADFLOW_METRICS_PORT")
            self.gateways.append(gateway.start())
        self.processor.wait_log("Worker ready", timeout=120.0)
        for gateway in self.gateways:
            gateway.wait_ready(timeout=60.0)
        for service in [self.processor, *self.gateways]:
            self.log_offsets[service.name] = len(service.log_text().splitlines())

    def pids(self) -> dict[str, int | None]:
        """The processes whose CPU each phase samples (None: not ours to sample)."""
        out: dict[str, int | None] = {"broker": self._broker_pid()}
        out["processor"] = _pid(self.processor)
        for gateway in self.gateways:
            out[gateway.name] = _pid(gateway)
        out["redis"] = (
            None if self.redis is None or self.redis.proc is None else self.redis.proc.pid
        )
        out["loadgen"] = os.getpid()
        return out

    def _broker_pid(self) -> int | None:
        return None if self.broker is None else self.broker.pid()

    def services_alive(self) -> dict[str, int | None]:
        """Exit codes of the services (None: still running)."""
        services = [s for s in [self.processor, *self.gateways] if s is not None]
        return {s.name: None if s.proc is None else s.proc.poll() for s in services}

    def log_tails(self, lines: int = 15) -> dict[str, list[str]]:
        services = [s for s in [self.processor, *self.gateways] if s is not None]
        out: dict[str, list[str]] = {}
        for service in services:
            with contextlib.suppress(OSError):
                out[service.name] = service.log_text().splitlines()[-lines:]
        return out

    def log_problems(self) -> dict[str, dict[str, list[str]]]:
        """Lines of each service's log that report an error (JSON or plain text),
        logged while it started (``startup``) or during the runs (``runs``)."""
        services = [s for s in [self.processor, *self.gateways] if s is not None]
        out: dict[str, dict[str, list[str]]] = {}
        for service in services:
            with contextlib.suppress(OSError):
                lines = service.log_text().splitlines()
                start = self.log_offsets.get(service.name, len(lines))
                found = [(i, _brief(line)) for i, line in enumerate(lines) if _PROBLEM.search(line)]
                out[service.name] = {
                    "startup": [line for i, line in found if i < start],
                    "runs": [line for i, line in found if i >= start],
                }
        return out

    def stop(self) -> None:
        """Stop everything this stack started, each step independent of the others."""
        if self.cluster is not None:
            for service in reversed(self.cluster.services):
                with contextlib.suppress(Exception):
                    service.stop()
        if self.broker is None and self.bootstrap:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics(self.bootstrap, self.prefix))
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.broker is not None:
            print("stopping the local Kafka broker ...", flush=True)
            with contextlib.suppress(Exception):
                self.broker.stop()


def _brief(line: str) -> str:
    """A log line, shortened: a JSON record's message and the end of its traceback."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line[:500]
    if not isinstance(record, dict):
        return line[:500]
    tail = " | ".join(str(record.get("exc", "")).strip().splitlines()[-3:])
    return f"{record.get('level')}: {record.get('msg')} {tail}"[:800]


def _pid(service: Service | None) -> int | None:
    return None if service is None or service.proc is None else service.proc.pid


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """On an external broker, remove this run's topics (the processors' changelog and
    dead letters included)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def _port_free_everywhere() -> int:
    """A port no socket uses on any address: the services bind 0.0.0.0, and a port
    free on 127.0.0.1 may be another connection's on 127.0.0.2 (a benchmark with
    tens of thousands of loopback sockets running alongside made the processor's
    bind fail)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def _ports_free_everywhere(service: Service, *names: str) -> None:
    for name in names:
        port = _port_free_everywhere()
        service.env[name] = str(port)
        if service.port is not None and name in ("LEADFLOW_PROCESSOR_HTTP_PORT", "LEADFLOW_PORT"):
            service.port = port
