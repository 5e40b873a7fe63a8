"""The distributed mode as real processes: processors and gateways over Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.distributed.settings import KafkaSettings
from services.processor.stall import STALL_EXIT_CODE
from tests.support.server import ROOT, free_port


@dataclass
class Service:
    """One ``leadflow run ...`` process; restartable with the same settings.

    With ``restart_on_stall`` a watcher restarts it when it exits with the stall
    watch's code, as Kubernetes and compose's ``restart: unless-stopped`` do; every
    other exit (kill -9 by a test, a crash) is left for the test to see."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    restart_on_stall: bool = False
    stall_restarts: int = 0
    _watcher: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Service:
        self._stopping.clear()
        self._spawn()
        if self.restart_on_stall and (self._watcher is None or not self._watcher.is_alive()):
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()
        return self

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", *self.args],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            proc = self.proc
            if proc is not None and proc.poll() == STALL_EXIT_CODE:
                self.stall_restarts += 1
                self._spawn()

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a long GC
        pause, a throttled container) until :meth:`thaw`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self._stopping.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def wait_ready(self, timeout: float = 60.0) -> Service:
        """Gateways: /readyz answers 200 (connected to Kafka)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{self.port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready:\n{self.log_text()[-3000:]}")

    def wait_log(self, text: str, timeout: float = 60.0) -> Service:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return self
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {text!r} in its log:\n{self.log_text()[-3000:]}")


@dataclass
class Cluster:
    bootstrap: str
    redis_url: str
    workdir: Path
    prefix: str
    partitions: int = 4
    reply_partitions: int = 4
    services: list[Service] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "LEADFLOW_REDIS_URL": self.redis_url,
            "LEADFLOW_REDIS_PREFIX": self.prefix,
            "LEADFLOW_TOPIC_PREFIX": self.prefix,
            "LEADFLOW_PARTITIONS": str(self.partitions),
            "LEADFLOW_REPLY_PARTITIONS": str(self.reply_partitions),
            "LEADFLOW_RESUME_SECRET": "integration-test-secret-0123456789",
            "LEADFLOW_COMMAND_SECRET": "integration-command-secret-0123456789",
            "LEADFLOW_LOG_LEVEL": "info",
            "LEADFLOW_COMMAND_TIMEOUT_SECONDS": "5",
            "LEADFLOW_RATE_PER_SECOND": "1000",
            "LEADFLOW_RATE_BURST": "1000",
            "LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "0",  # gateways: no load balancer to leave
        }

    @property
    def settings(self) -> KafkaSettings:
        """The cluster's Kafka settings, as its services read them from :attr:`env`."""
        return KafkaSettings(
            bootstrap=self.bootstrap,
            prefix=self.prefix,
            partitions=self.partitions,
            reply_partitions=self.reply_partitions,
        )

    def processor(self, name: str = "processor", **extra_env: str) -> Service:
        port = free_port()  # its /healthz, /readyz and /metrics
        env = {
            **self.env,
            "LEADFLOW_PROCESSOR_HTTP_PORT": str(port),
            "LEADFLOW_PROCESSOR_STALL_SECONDS": "40",  # above a dead member's 30 s session
            **extra_env,
        }
        service = Service(
            name,
            ["run", "processor"],
            env,
            self.workdir / f"{name}.log",
            port,
            restart_on_stall=True,
        )
        self.services.append(service)
        return service

    def gateway(self, ordinal: int) -> Service:
        port = free_port()
        env = {
            **self.env,
            "LEADFLOW_GATEWAY_ORDINAL": str(ordinal),
            "LEADFLOW_PORT": str(port),
            "LEADFLOW_METRICS_PORT": str(free_port()),  # not 9100: several gateways here
        }
        name = f"gateway-{ordinal}"
        service = Service(name, ["run", "gateway"], env, self.workdir / f"{name}.log", port)
        self.services.append(service)
        return service

    def projector(self, redis_url: str | None = None, name: str = "projector") -> Service:
        port = free_port()
        env = {
            **self.env,
            "LEADFLOW_PROJECTOR_PORT": str(port),
        }
        if redis_url is not None:
            env["LEADFLOW_REDIS_URL"] = redis_url
        service = Service(name, ["run", "projector"], env, self.workdir / f"{name}.log", port)
        self.services.append(service)
        return service

    def delivery(self, name: str = "delivery", env: dict[str, str] | None = None) -> Service:
        """A ``leadflow run delivery`` (its /healthz, /readyz and /metrics on ``port``)."""
        port = free_port()
        service_env = {**self.env, "LEADFLOW_DELIVERY_PORT": str(port), **(env or {})}
        service = Service(
            name, ["run", "delivery"], service_env, self.workdir / f"{name}.log", port
        )
        self.services.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


async def topic_records(
    bootstrap: str, topic: str, partitions_count: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic up to its end now, read by an independent consumer.

    ``read_committed``, as every reader of the log must read it: the processors
    write in transactions, and the records of an aborted one (a zombie's, or a
    batch given up on) stay in the partition, marked aborted."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partitions_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, partitions_count: int
) -> list[tuple[int, bytes, bytes]]:
    """Every record of a topic as (partition, key, value)."""
    return [
        (r.partition, r.key, r.value)
        for r in await topic_records(bootstrap, topic, partitions_count)
    ]
