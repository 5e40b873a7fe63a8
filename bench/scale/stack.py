"""The distributed mode the scale run holds its sockets on: a Kafka broker (the local
Maven-jar broker of ``kafka.sh``, or ``KAFKA_BOOTSTRAP_SERVERS``), Redis
(``redis-server``, or ``REDIS_URL``), processors and gateways as
``python -m app.cli run ...`` subprocesses (``tests.support.distributed.Cluster``),
on topics of a fresh prefix. The same pieces as ``bench.kafka.stack`` (not imported:
that module belongs to the Kafka benchmark), with what 100k sockets need: one
replies partition per gateway, a connection cap above what a survivor holds after
the kill, an idle timeout longer than the run, and quiet logs (warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import kafka_for_bench, redis_for_bench
from services.distributed.topics import ensure_topics
from tests.support.distributed import Cluster, Service
from tests.support.kafka import LocalKafka
from tests.support.redis_server import LocalRedis


@dataclass
class Stack:
    workdir: Path
    gateways: int
    processors: int
    partitions: int
    max_connections: int
    log_level: str = "warning"
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"scale-{uuid.uuid4().hex[:8]}.")
    bootstrap: str = ""
    redis_url: str = ""
    broker: LocalKafka | None = None
    redis: LocalRedis | None = None
    cluster: Cluster | None = None
    processor_services: list[Service] = field(default_factory=list)
    gateway_services: list[Service] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "LEADFLOW_LOG_LEVEL": self.log_level,
            "LEADFLOW_COMMAND_TIMEOUT_SECONDS": "10",
            "LEADFLOW_STARTS_PER_MINUTE": "1000000",
            "LEADFLOW_MAX_CONNECTIONS": str(self.max_connections),
            "LEADFLOW_IDLE_TIMEOUT_SECONDS": "7200",  # held sockets send nothing for minutes
            **self.extra_env,
        }

    def start(self) -> Stack:
        """Start everything; on any failure stop what started, then raise."""
        try:
            self.bootstrap, self.broker = kafka_for_bench(self.workdir, self.notes)
            self.redis_url, self.redis = redis_for_bench(self.workdir, self.notes)
            self.cluster = Cluster(
                self.bootstrap,
                self.redis_url,
                self.workdir,
                self.prefix,
                partitions=self.partitions,
                reply_partitions=self.gateways,
            )
            # the topics first, as the integration fixtures do: services started at
            # the same moment on a fresh broker otherwise race to create them
            asyncio.run(ensure_topics(self.cluster.settings))
            print(
                f"starting {self.processors} processor(s) and {self.gateways} gateways ...",
                flush=True,
            )
            for n in range(self.processors):
                service = self.cluster.processor(f"processor-{n}")
                service.env.update(self.env())
                service.env["LEADFLOW_LOG_LEVEL"] = "info"  # its "Worker ready"; quiet per command
                self.processor_services.append(service.start())
            for ordinal in range(self.gateways):
                service = self.cluster.gateway(ordinal)
                service.env.update(self.env())
                self.gateway_services.append(service.start())
            for service in self.processor_services:
                service.wait_log("Worker ready", timeout=180.0)
            for service in self.gateway_services:
                service.wait_ready(timeout=120.0)
        except BaseException:
            self.stop()
            raise
        return self

    def broker_pid(self) -> int | None:
        return None if self.broker is None else self.broker.pid()

    def pids(self) -> dict[str, int]:
        """Every process of the stack this run can sample, by name."""
        out: dict[str, int] = {}
        broker = self.broker_pid()
        if broker is not None:
            out["broker"] = broker
        if self.redis is not None and self.redis.proc is not None:
            out["redis"] = self.redis.proc.pid
        for service in [*self.processor_services, *self.gateway_services]:
            if service.proc is not None and service.proc.poll() is None:
                out[service.name] = service.proc.pid
        return out

    def exit_codes(self) -> dict[str, int | None]:
        services = [*self.processor_services, *self.gateway_services]
        return {s.name: None if s.proc is None else s.proc.poll() for s in services}

    def problems(self, limit: int = 10) -> dict[str, list[str]]:
        """Error lines of each service's log (the first ``limit``)."""
        out: dict[str, list[str]] = {}
        for service in [*self.processor_services, *self.gateway_services]:
            with contextlib.suppress(OSError):
                lines = [
                    line[:400]
                    for line in service.log_text().splitlines()
                    if '"level": "error"' in line or "Traceback" in line or "ERROR" in line
                ]
                if lines:
                    out[service.name] = lines[:limit]
        return out

    def stop(self) -> None:
        """Stop everything started, each step independent of the others; gateways
        first (their sockets), the broker last."""
        for service in [*self.gateway_services, *self.processor_services]:
            with contextlib.suppress(Exception):
                service.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.broker is not None:
            print("stopping the local Kafka broker ...", flush=True)
            with contextlib.suppress(Exception):
                self.broker.stop()
