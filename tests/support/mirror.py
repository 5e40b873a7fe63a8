"""Kafka MirrorMaker 2 in dedicated mode, for the two-region proof and the lag benchmark.

One JVM (``org.apache.kafka.connect.mirror.MirrorMaker``) from the jars of
``deploy/local/mirror/mirror.sh install`` (Maven Central, the broker's Kafka version),
configured by :func:`mm2_properties`: the regions' conversation log flows into the
analytics cluster, the analytics cluster's flows registry and policy topics flow back to
every region, each topic under its own name (``IdentityReplicationPolicy``) and read
``read_committed`` (the processors and the registry write in transactions: an aborted
batch must not reach the other side as if it had been committed). docs/runbook.md,
"Regions", explains the topology and why identity naming is safe for these topics only.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.support.kafka import ROOT
from tests.support.server import free_port

MIRROR_SH = ROOT / "deploy" / "local" / "mirror" / "mirror.sh"
MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"
IDENTITY_POLICY = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
_INSTALL_TIMEOUT = 900.0
# what each flow's source task logs once it copies (one line per flow)
_SOURCE_TASK_STARTED = (
    "WorkerSourceTask{id=MirrorSourceConnector-0} Source task finished initialization and start"
)
# Region -> analytics: the conversation log. `commands` too: ``replay --verify`` re-runs
# the decider over them. Never `replies` (a gateway's mailbox), never the changelog (a
# processor's private state), never `commands` *into* a region (its processors would
# act on them).
UP_TOPICS = ("events", "commands")
# Analytics -> every region: what the analytics side alone writes.
DOWN_TOPICS = ("flows", "policy-snapshots", "policy-snapshot-archive", "policy-control")


class MirrorError(RuntimeError):
    """MirrorMaker did not start (the message carries the end of its log)."""


def topics_pattern(prefix: str, names: Sequence[str]) -> str:
    """The MirrorMaker topic filter (a regex, matched in full) for ``prefix`` + ``names``."""
    return f"{re.escape(prefix)}({'|'.join(re.escape(n) for n in names)})"


@dataclass(frozen=True, slots=True)
class Flow:
    """One replication flow ``source->target`` of the listed topics (a regex)."""

    source: str
    target: str
    topics: str


def region_flows(regions: Sequence[str], analytics: str, prefix: str) -> list[Flow]:
    """Every region's log up to ``analytics``; the analytics side's registry and policy
    topics down to every region. No topic goes both ways, so there is no cycle (which
    ``IdentityReplicationPolicy`` could not detect)."""
    up = topics_pattern(prefix, UP_TOPICS)
    down = topics_pattern(prefix, DOWN_TOPICS)
    return [
        *(Flow(region, analytics, up) for region in regions),
        *(Flow(analytics, region, down) for region in regions),
    ]


def mm2_properties(
    clusters: Mapping[str, str],
    flows: Sequence[Flow],
    *,
    replication_factor: int = 1,
    refresh_seconds: int = 5,
    rest_port: int | None = None,
    exactly_once: bool = True,
) -> str:
    """The dedicated-mode configuration (``connect-mirror-maker.properties``).

    Exactly once (KIP-618): every target's Connect workers write a task's records and
    its source offsets in one transaction, so a mirror that crashes or restarts copies
    nothing twice (at least once, its default, would copy again what it sent since its
    last offset flush, and a reader of the merged log would see those events twice).
    It needs the internal REST server (``rest_port``) that fences zombie tasks.
    ``exactly_once=False`` leaves Connect's default (the lag benchmark compares both)."""
    targets = sorted({flow.target for flow in flows})
    lines = [
        f"clusters = {', '.join(clusters)}",
        *(f"{alias}.bootstrap.servers = {bootstrap}" for alias, bootstrap in clusters.items()),
        # transactions: only committed records are copied (the processors' aborted
        # batches and fenced zombies' writes stay behind)
        *(f"{alias}.consumer.isolation.level = read_committed" for alias in clusters),
        f"replication.policy.class = {IDENTITY_POLICY}",
        f"replication.factor = {replication_factor}",
        *(
            f"{name}.replication.factor = {replication_factor}"
            for name in (
                "offset.storage",
                "config.storage",
                "status.storage",
                "offset-syncs.topic",
                "checkpoints.topic",
                "heartbeats.topic",
            )
        ),
        # the records only: no heartbeats, no consumer groups (a region's offsets mean
        # nothing on the merged topics: their checkpoints would be empty), no ACLs, no
        # topic configs (every cluster creates its topics itself, `leadflow topics`, so
        # the events' retention is the code's, never a default the mirror picked)
        "emit.heartbeats.enabled = false",
        "heartbeats.replication.enabled = false",
        "groups.exclude = .*",
        "sync.group.offsets.enabled = false",
        "sync.topic.acls.enabled = false",
        "sync.topic.configs.enabled = false",
        # new topics and partitions found within seconds, not the default ten minutes
        f"refresh.topics.interval.seconds = {refresh_seconds}",
        "offset.flush.interval.ms = 1000",
    ]
    if exactly_once:
        lines += [f"{target}.exactly.once.source.support = enabled" for target in targets]
    if rest_port is not None:
        lines += [
            "dedicated.mode.enable.internal.rest = true",
            f"listeners = http://127.0.0.1:{rest_port}",
        ]
    for flow in flows:
        lines += [
            f"{flow.source}->{flow.target}.enabled = true",
            f"{flow.source}->{flow.target}.topics = {flow.topics}",
        ]
    # every other pair off (dedicated mode would otherwise consider each one)
    enabled = {(f.source, f.target) for f in flows}
    for source in clusters:
        for target in clusters:
            if source != target and (source, target) not in enabled:
                lines.append(f"{source}->{target}.enabled = false")
    return "\n".join(lines) + "\n"


def install() -> Path:
    """Fetch the MirrorMaker jars into the cache (fast once there); their directory."""
    proc = subprocess.run(
        ["bash", str(MIRROR_SH), "install"],
        capture_output=True,
        text=True,
        timeout=_INSTALL_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise MirrorError(f"mirror.sh install exited {proc.returncode}:\n{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class MirrorMaker:
    """One dedicated MirrorMaker process over ``clusters`` (alias -> bootstrap)."""

    clusters: dict[str, str]
    flows: list[Flow]
    workdir: Path
    heap: str = "-Xms128m -Xmx384m"
    exactly_once: bool = True
    proc: subprocess.Popen[bytes] | None = None
    _config: Path | None = field(default=None, repr=False)
    _log_from: int = 0  # where this start's lines begin in the log

    @property
    def log_file(self) -> Path:
        return self.workdir / "mirror.log"

    def start(self, timeout: float = 90.0) -> MirrorMaker:
        """Start and wait until every flow's source connector runs."""
        libs = install()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mm2.properties"
        config.write_text(
            mm2_properties(
                self.clusters, self.flows, rest_port=free_port(), exactly_once=self.exactly_once
            )
        )
        log4j = self.workdir / "log4j2.properties"
        log4j.write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
        )
        self._config = config
        self._log_from = len(self._log_text())
        with (self.workdir / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "java",
                    *self.heap.split(),
                    "-XX:+UseSerialGC",
                    f"-Dlog4j2.configurationFile={log4j}",
                    "-cp",
                    f"{libs}/*",
                    MAIN_CLASS,
                    str(config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_started(timeout)
        return self

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = len(self.flows)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise MirrorError(f"MirrorMaker exited {self.proc.returncode}\n{self.log_tail()}")
            text = self._log_text()[self._log_from :]
            if text.count(_SOURCE_TASK_STARTED) >= want:
                return
            time.sleep(0.2)
        raise MirrorError(f"MirrorMaker not started after {timeout:.0f} s\n{self.log_tail()}")

    def kill9(self) -> None:
        """Crash it (SIGKILL): its Connect state stays in the clusters' topics, and a
        :meth:`start` resumes from the offsets it had committed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def _log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self._log_text().splitlines()[-lines:]
        return f"--- {self.log_file} (last {len(tail)} lines) ---\n" + "\n".join(tail)

    def __enter__(self) -> MirrorMaker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
