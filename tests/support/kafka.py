"""A real Kafka broker for tests.

The project rule, in :func:`kafka_bootstrap_for_session`:

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: use that broker, start nothing;
2. else a Docker engine answers and testcontainers is installed: a Kafka container;
3. else the local KRaft broker of ``deploy/local/kafka/kafka.sh`` (Maven Central jars, Java 17).

:class:`LocalKafka` wraps ``kafka.sh`` for tests that need to stop, crash (``kill -9``) and
restart the broker on the same data directory and port.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka" / "kafka.sh"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
IMAGE_ENV = "LEADFLOW_KAFKA_IMAGE"
_BOOTSTRAP_PREFIX = f"{BOOTSTRAP_ENV}="
_SASL_SSL_PREFIX = "KAFKA_SASL_SSL_BOOTSTRAP="
# Cold Maven fetch of the jars (about 45 MB) on a slow link; a no-op once cached.
_INSTALL_TIMEOUT = 900.0


class KafkaError(RuntimeError):
    """kafka.sh failed; the message carries its stderr and the end of the broker's log."""


@dataclass
class LocalKafka:
    """One broker from ``kafka.sh`` in ``data_dir``: its config, data, log and pid live there.

    The port is picked by ``kafka.sh`` on the first start and kept afterwards, so ``restart``
    brings the broker back at the same bootstrap address with the same data.
    """

    data_dir: Path
    port: int | None = None
    start_timeout: float = 60.0
    stop_timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    # The SASL_SSL listener's port, when ``env`` gives kafka.sh its LEADFLOW_KAFKA_TLS_* files.
    sasl_ssl_port: int | None = None

    @property
    def sasl_ssl_bootstrap(self) -> str:
        if self.sasl_ssl_port is None:
            raise KafkaError("LocalKafka has no SASL_SSL listener (or has not been started)")
        return f"127.0.0.1:{self.sasl_ssl_port}"

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise KafkaError("LocalKafka has not been started: no port yet")
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def install(self) -> Path:
        """Fetch the jars into the cache (fast when already there); return the cache path."""
        out = self._run("install", timeout=_INSTALL_TIMEOUT, with_dir=False)
        return Path(out.strip().splitlines()[-1])

    def start(self) -> LocalKafka:
        """Start (formatting the storage the first time) and wait until the broker serves."""
        self.install()
        args = ["--port", str(self.port)] if self.port is not None else []
        out = self._run("start", *args, timeout=self.start_timeout + 30.0)
        for line in reversed(out.splitlines()):
            if line.startswith(_SASL_SSL_PREFIX):
                self.sasl_ssl_port = int(line.rsplit(":", 1)[1])
        for line in reversed(out.splitlines()):
            if line.startswith(_BOOTSTRAP_PREFIX):
                self.port = int(line.removeprefix(_BOOTSTRAP_PREFIX).rsplit(":", 1)[1])
                return self
        raise KafkaError(f"kafka.sh start printed no {_BOOTSTRAP_PREFIX} line:\n{out}")

    def stop(self) -> None:
        """Graceful stop: SIGTERM, then SIGKILL after ``stop_timeout``. No-op if not running."""
        self._run("stop", timeout=self.stop_timeout + 20.0)

    def pid(self) -> int | None:
        """The broker JVM's pid (None when it never started or its pid file is unreadable)."""
        try:
            return int((self.data_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the broker's JVM (SIGSTOP freezes it: its port still
        accepts connections, nothing is answered)."""
        os.kill(int((self.data_dir / "kafka.pid").read_text().strip()), signum)

    def kill9(self) -> None:
        """Crash it: SIGKILL, no controlled shutdown. No-op if not running."""
        self._run("kill9", timeout=30.0)

    def restart(self, *, crash: bool = False) -> LocalKafka:
        """Stop (or ``kill -9`` when ``crash``) and start again on the same data and port."""
        if crash:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def is_running(self) -> bool:
        proc = subprocess.run(
            ["bash", str(KAFKA_SH), "status", "--dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=30.0,
            check=False,
        )
        return proc.returncode == 0

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LEADFLOW_KAFKA_START_TIMEOUT": str(int(self.start_timeout)),
            "LEADFLOW_KAFKA_STOP_TIMEOUT": str(int(self.stop_timeout)),
            **self.env,
        }

    def _run(self, command: str, *args: str, timeout: float, with_dir: bool = True) -> str:
        cmd = ["bash", str(KAFKA_SH), command, *args]
        if with_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            cmd += ["--dir", str(self.data_dir)]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaError(f"{' '.join(cmd)} timed out after {timeout:.0f}s") from exc
        if proc.returncode != 0:
            raise KafkaError(
                f"{' '.join(cmd)} exited {proc.returncode}\n"
                f"--- stderr ---\n{proc.stderr}{self._log_tail()}"
            )
        return proc.stdout

    def _log_tail(self, lines: int = 40) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"--- {self.log_file} (last {len(tail)} lines) ---\n" + "\n".join(tail)


def docker_engine_answers(timeout: float = 3.0) -> bool:
    """True when the Docker SDK is installed and a Docker engine answers a ping."""
    try:
        docker: Any = importlib.import_module("docker")
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _kafka_container_class() -> Any:
    """testcontainers' KafkaContainer, or None when testcontainers[kafka] is not installed."""
    for module in ("testcontainers.community.kafka", "testcontainers.kafka"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return importlib.import_module(module).KafkaContainer
        except (ImportError, AttributeError):
            continue
    return None


def _start_container(kafka_container: Any) -> tuple[str, Callable[[], None]]:
    image = os.environ.get(IMAGE_ENV)
    container = kafka_container(image) if image else kafka_container()
    container = container.with_kraft()
    # The same broker settings as kafka.sh's: no topic auto-creation, and a single replica
    # for the transaction log (the image's default of 3 would block transactional producers).
    for key, value in {
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_NUM_PARTITIONS": "1",
    }.items():
        container = container.with_env(key, value)
    container.start()

    def cleanup() -> None:
        container.stop()

    return str(container.get_bootstrap_server()), cleanup


def kafka_bootstrap_for_session(tmp_dir: Path) -> tuple[str, Callable[[], None]]:
    """A broker for a test session: ``(bootstrap servers, cleanup)``.

    ``KAFKA_BOOTSTRAP_SERVERS`` if set (cleanup does nothing); else a testcontainers Kafka when
    a Docker engine answers (falling back, with a warning, if the container cannot start);
    else the local broker from ``kafka.sh`` with its data in ``tmp_dir / "kafka"``.
    """
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        return external, lambda: None

    kafka_container = _kafka_container_class()
    if kafka_container is not None and docker_engine_answers():
        try:
            return _start_container(kafka_container)
        except Exception as exc:
            warnings.warn(
                f"testcontainers Kafka failed to start ({exc!r}); using the local broker",
                RuntimeWarning,
                stacklevel=2,
            )

    broker = LocalKafka(Path(tmp_dir) / "kafka").start()
    return broker.bootstrap, broker.stop
