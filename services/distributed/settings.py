"""Settings of the distributed mode, from environment variables with defaults.

| variable | default | meaning |
|---|---|---|
| LEADFLOW_KAFKA_BOOTSTRAP (or KAFKA_BOOTSTRAP_SERVERS) | 127.0.0.1:9092 | Kafka bootstrap servers |
| LEADFLOW_TOPIC_PREFIX | leadflow. | prefix of every topic (and of the processor's group id) |
| LEADFLOW_PARTITIONS | 12 | partitions of `commands` and `events` (co-partitioned: keep equal) |
| LEADFLOW_REPLY_PARTITIONS | 16 | partitions of `replies`: the most gateway instances at once |
| LEADFLOW_REPLICATION_FACTOR | 1 | replication of every topic (3 in production) |
| LEADFLOW_EVENTS_RETENTION_MS | -1 | `events` retention (-1: forever; it is the log) |
| LEADFLOW_COMMANDS_RETENTION_MS | 604800000 | `commands` retention (7 days) |
| LEADFLOW_REPLIES_RETENTION_MS | 3600000 | `replies` retention (1 hour) |
| LEADFLOW_REDIS_URL (or REDIS_URL) | redis://127.0.0.1:6379/0 | Redis (keys, read models) |
| LEADFLOW_REDIS_PREFIX | leadflow: | prefix of every Redis key (same everywhere) |
| LEADFLOW_GATEWAY_ORDINAL | host name's `-N` suffix, else 0 | the replies partition it reads |
| LEADFLOW_PROCESSOR_SESSION_TIMEOUT | 10 | seconds before a dead worker's partitions move |
| LEADFLOW_PROCESSOR_STALL_SECONDS | 120 | stuck so long while Kafka and Redis answer: exit 70 |
| LEADFLOW_PROCESSOR_MAX_BATCH | 500 | commands of a partition committed in one transaction |
| LEADFLOW_PROCESSOR_DRAIN_SECONDS | 3 | how long a batch in hand may finish on SIGTERM |

Kafka's TLS and SASL/SCRAM variables (LEADFLOW_KAFKA_SECURITY_PROTOCOL and the others) are
in :mod:`services.distributed.kafka_security`; Redis's (LEADFLOW_REDIS_CA_FILE, ...) in
:mod:`services.distributed.redis_client`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.distributed.kafka_security import KafkaSecurity


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "")
    value = default if raw == "" else int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def ordinal_from_hostname(hostname: str) -> int:
    """``gateway-3`` -> 3: a StatefulSet pod's ordinal; 0 when there is none."""
    match = re.search(r"-(\d+)$", hostname)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    prefix: str = "leadflow."
    partitions: int = 12
    reply_partitions: int = 16
    replication_factor: int = 1
    events_retention_ms: int = -1
    commands_retention_ms: int = 7 * 24 * 3600 * 1000
    replies_retention_ms: int = 3600 * 1000
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def client_kwargs(self) -> dict[str, Any]:
        """What every aiokafka client is built with: the bootstrap servers and the
        security settings (TLS context, SASL credentials)."""
        return {"bootstrap_servers": self.bootstrap, **self.security.client_kwargs()}

    @property
    def commands_topic(self) -> str:
        return f"{self.prefix}commands"

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}events"

    @property
    def replies_topic(self) -> str:
        return f"{self.prefix}replies"

    @property
    def processor_id(self) -> str:
        """The processors' consumer group, and the prefix of their transactional
        ids (one per commands partition) and of their changelog topic."""
        return f"{self.prefix}processor"

    @property
    def changelog_topic(self) -> str:
        """The processors' conversation states, compacted, keyed by conversation id
        and co-partitioned with ``commands`` (the name faust gave it, kept so that
        a deployment upgraded from the faust processor keeps its states)."""
        return f"{self.processor_id}-conversations-changelog"

    @property
    def dead_letters_topic(self) -> str:
        """Commands no processor could read, with their source partition and offset."""
        return f"{self.prefix}commands-dead"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env
        return cls(
            bootstrap=env.get("LEADFLOW_KAFKA_BOOTSTRAP")
            or env.get("KAFKA_BOOTSTRAP_SERVERS")
            or "127.0.0.1:9092",
            prefix=env.get("LEADFLOW_TOPIC_PREFIX", "leadflow."),
            partitions=_int(env, "LEADFLOW_PARTITIONS", 12),
            reply_partitions=_int(env, "LEADFLOW_REPLY_PARTITIONS", 16),
            replication_factor=_int(env, "LEADFLOW_REPLICATION_FACTOR", 1),
            events_retention_ms=_int(env, "LEADFLOW_EVENTS_RETENTION_MS", -1, minimum=-1),
            commands_retention_ms=_int(env, "LEADFLOW_COMMANDS_RETENTION_MS", 604_800_000),
            replies_retention_ms=_int(env, "LEADFLOW_REPLIES_RETENTION_MS", 3_600_000),
            security=KafkaSecurity.from_env(env),
        )


def redis_url_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("LEADFLOW_REDIS_URL") or env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def gateway_ordinal_from_env(reply_partitions: int, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get("LEADFLOW_GATEWAY_ORDINAL", "")
    ordinal = int(raw) if raw else ordinal_from_hostname(socket.gethostname())
    if not 0 <= ordinal < reply_partitions:
        raise ValueError(
            f"gateway ordinal {ordinal} has no replies partition "
            f"(LEADFLOW_REPLY_PARTITIONS={reply_partitions})"
        )
    return ordinal
