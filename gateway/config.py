"""Gateway settings, read from environment variables with documented defaults."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.regions import Regions


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    try:
        value = default if raw in (None, "") else float(str(raw))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    try:
        value = default if raw in (None, "") else int(str(raw))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


DEFAULT_METRICS_PORT = 9100
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in _TRUE + _FALSE:
        raise ValueError(f"{name} must be on or off, got {raw!r}")
    return raw in _TRUE


def _shed_lag(env: Mapping[str, str]) -> float | None:
    """``LEADFLOW_SHED_LAG_MS``: milliseconds of event-loop lateness above which new
    upgrades are refused (gateway.loop_lag), or ``off``; default 2000."""
    raw = env.get("LEADFLOW_SHED_LAG_MS", "").strip().lower()
    if raw in _FALSE:
        return None
    try:
        return _float(env, "LEADFLOW_SHED_LAG_MS", 2000.0) / 1000.0
    except ValueError:
        raise ValueError(
            f"LEADFLOW_SHED_LAG_MS must be a positive number of milliseconds or off, got {raw!r}"
        ) from None


def _max_connections(env: Mapping[str, str]) -> int | None:
    """``LEADFLOW_MAX_CONNECTIONS``: a positive integer, or unset/``auto`` for the default
    derived from the open-files limit at start (gateway.admission)."""
    raw = env.get("LEADFLOW_MAX_CONNECTIONS", "").strip().lower()
    if raw in ("", "auto"):
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(
            f"LEADFLOW_MAX_CONNECTIONS must be a positive integer or auto, got {raw!r}"
        )
    return int(raw)


def _metrics_port(env: Mapping[str, str], default: int | None) -> int | None:
    raw = env.get("LEADFLOW_METRICS_PORT", "").strip().lower()
    if raw in _FALSE:
        return None
    port = default if raw == "" else int(raw)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"LEADFLOW_METRICS_PORT must be a port or off, got {raw!r}")
    return port


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    resume_secret: bytes
    previous_resume_secrets: tuple[bytes, ...] = ()  # still accepted, never signed with
    host: str = "127.0.0.1"
    port: int = 8080
    instance: str = "gateway-0"
    max_frame_bytes: int = 4096
    max_transport_bytes: int = 65536
    rate_per_second: float = 10.0
    rate_burst: int = 20
    flood_limit: int = 50
    # above the widget's own ping (every 25 s), which defers it: a live widget is never
    # sent a WebSocket ping; a silent peer is, and is closed without a pong in half this
    heartbeat_seconds: float = 30.0
    idle_timeout_seconds: float = 300.0
    resume_ttl_seconds: int = 30 * 24 * 3600
    command_timeout_seconds: float = 10.0
    starts_per_minute: int = 5  # per socket: a burst of this many, then this many a minute
    handshake_timeout_seconds: float = 10.0  # request headers complete within this
    # /metrics on a port of its own (never the public one); None: no /metrics at all
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    demo_page: bool = False  # GET / serves the demo page; off: 404
    # open WebSockets at most (503 + Retry-After above); None: from the open-files limit
    max_connections: int | None = None
    busy_retry_seconds: int = 2  # Retry-After of a refused upgrade, plus up to as much again
    # upgrades get 503 while the event loop ran this late in the last second; None: never
    shed_lag_seconds: float | None = 2.0
    # this region and every region's socket (services.regions); default: no regions
    regions: Regions = field(default_factory=Regions)
    # connections the kernel completes and queues while the loop has not accepted them
    # yet (capped by net.core.somaxconn); aiohttp's 128 overflows in a reconnect storm
    listen_backlog: int = 4096

    @classmethod
    def from_env(
        cls,
        resume_secret: bytes,
        env: Mapping[str, str] | None = None,
        *,
        metrics_port: int | None = DEFAULT_METRICS_PORT,
        demo_page: bool = False,
    ) -> GatewaySettings:
        """``LEADFLOW_*`` variables; ``LEADFLOW_RESUME_SECRET`` overrides ``resume_secret``,
        ``LEADFLOW_RESUME_SECRET_PREVIOUS`` (commas between several) lists the
        secrets still accepted after a rotation. ``metrics_port`` and ``demo_page``
        are the defaults of ``LEADFLOW_METRICS_PORT`` (``off``: none) and
        ``LEADFLOW_DEMO_PAGE``, which differ between the modes: the distributed
        gateway serves /metrics on 9100 and no demo page, ``leadflow serve`` the
        demo page and no /metrics unless asked."""
        env = os.environ if env is None else env
        host = env.get("LEADFLOW_HOST", "127.0.0.1")
        secret = env.get("LEADFLOW_RESUME_SECRET", "")
        previous = env.get("LEADFLOW_RESUME_SECRET_PREVIOUS", "")
        return cls(
            resume_secret=secret.encode() if secret else resume_secret,
            previous_resume_secrets=tuple(s.encode() for s in previous.split(",") if s),
            host=host,
            port=_int(env, "LEADFLOW_PORT", 8080),
            instance=env.get("LEADFLOW_INSTANCE", "gateway-0"),
            max_frame_bytes=_int(env, "LEADFLOW_MAX_FRAME_BYTES", 4096),
            max_transport_bytes=_int(env, "LEADFLOW_MAX_TRANSPORT_BYTES", 65536),
            rate_per_second=_float(env, "LEADFLOW_RATE_PER_SECOND", 10.0),
            rate_burst=_int(env, "LEADFLOW_RATE_BURST", 20),
            flood_limit=_int(env, "LEADFLOW_FLOOD_LIMIT", 50),
            heartbeat_seconds=_float(env, "LEADFLOW_HEARTBEAT_SECONDS", 30.0),
            idle_timeout_seconds=_float(env, "LEADFLOW_IDLE_TIMEOUT_SECONDS", 300.0),
            resume_ttl_seconds=_int(env, "LEADFLOW_RESUME_TTL_SECONDS", 30 * 24 * 3600),
            command_timeout_seconds=_float(env, "LEADFLOW_COMMAND_TIMEOUT_SECONDS", 10.0),
            starts_per_minute=_int(env, "LEADFLOW_STARTS_PER_MINUTE", 5),
            handshake_timeout_seconds=_float(env, "LEADFLOW_HANDSHAKE_TIMEOUT_SECONDS", 10.0),
            metrics_host=env.get("LEADFLOW_METRICS_HOST") or host,
            metrics_port=_metrics_port(env, metrics_port),
            demo_page=_flag(env, "LEADFLOW_DEMO_PAGE", demo_page),
            max_connections=_max_connections(env),
            busy_retry_seconds=_int(env, "LEADFLOW_BUSY_RETRY_SECONDS", 2),
            shed_lag_seconds=_shed_lag(env),
            regions=Regions.from_env(env),
            listen_backlog=_int(env, "LEADFLOW_LISTEN_BACKLOG", 4096),
        )
