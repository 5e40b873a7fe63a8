"""Lead delivery's settings from the environment (pure: the mapping is passed in).

| variable | default | meaning |
|---|---|---|
| LEADFLOW_DELIVERY | on | `off`: `leadflow serve` runs no delivery worker |
| LEADFLOW_PUBLIC_URL | http://127.0.0.1:8080 | the read API's public base, for transcript links |
| LEADFLOW_DELIVERY_ALLOW_HTTP | false | webhook URLs may be `http://` |
| LEADFLOW_DELIVERY_ALLOW_NETWORKS | (none) | CIDRs the SSRF guard lets through (`127.0.0.1/32`) |
| LEADFLOW_DELIVERY_TIMEOUT_SECONDS | 15 | one attempt, at most |
| LEADFLOW_DELIVERY_RETRY_STEPS | 5,60,300,1800,7200,18000,36000 | retry ceilings, seconds |
| LEADFLOW_DELIVERY_GIVE_UP_HOURS | 72 | after this, the next failure is a dead letter |
| LEADFLOW_DELIVERY_MAX_IN_FLIGHT | 200 | attempts at once, per worker |
| LEADFLOW_DELIVERY_CIRCUIT_OPEN_SECONDS | 30 | a failing destination rests (doubling, to 20x) |
| LEADFLOW_SMTP_HOST (_PORT, _STARTTLS, ...) | (none) | the default SMTP server (docs) |
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.delivery.config import DeliveryConfigError, DeliverySettings, smtp_from_env
from services.delivery.dispatcher import DispatchSettings
from services.delivery.schedule import RetrySchedule
from services.delivery.ssrf import parse_networks

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class DeliveryEnv:
    enabled: bool = True
    public_url: str = "http://127.0.0.1:8080"
    config: DeliverySettings = field(default_factory=DeliverySettings)
    allow_networks: tuple[Network, ...] = ()
    timeout_seconds: float = 15.0
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str], public_url: str | None = None) -> DeliveryEnv:
        """Raises :class:`DeliveryConfigError` naming the variable that is wrong."""
        steps = _floats(env, "LEADFLOW_DELIVERY_RETRY_STEPS")
        give_up = _number(env, "LEADFLOW_DELIVERY_GIVE_UP_HOURS", 72.0, 0.001, 24 * 365)
        schedule = RetrySchedule(
            steps=steps or RetrySchedule().steps, give_up_after=give_up * 3600.0
        )
        timeout = _number(env, "LEADFLOW_DELIVERY_TIMEOUT_SECONDS", 15.0, 0.1, 300.0)
        in_flight = int(_number(env, "LEADFLOW_DELIVERY_MAX_IN_FLIGHT", 200, 1, 10_000))
        rest = _number(env, "LEADFLOW_DELIVERY_CIRCUIT_OPEN_SECONDS", 30.0, 0.1, 3600.0)
        return cls(
            enabled=_flag(env, "LEADFLOW_DELIVERY", True),
            public_url=(env.get("LEADFLOW_PUBLIC_URL") or public_url or cls.public_url).rstrip("/"),
            config=DeliverySettings(
                allow_http=_flag(env, "LEADFLOW_DELIVERY_ALLOW_HTTP", False),
                smtp=smtp_from_env(env),
            ),
            allow_networks=_networks(env.get("LEADFLOW_DELIVERY_ALLOW_NETWORKS", "")),
            timeout_seconds=timeout,
            dispatch=DispatchSettings(
                max_in_flight=in_flight,
                lease_seconds=2 * timeout + 5.0,  # a claim outlives its attempt
                hold_seconds=timeout,  # held no longer than the lease leaves for the attempt
                schedule=schedule,
                circuit_open_seconds=rest,
            ),
        )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise DeliveryConfigError(f"{name} must be true or false, not {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DeliveryConfigError(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise DeliveryConfigError(f"{name} must be from {low:g} to {high:g}")
    return value


def _floats(env: Mapping[str, str], name: str) -> tuple[float, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        values = tuple(float(v) for v in raw.split(","))
    except ValueError:
        raise DeliveryConfigError(f"{name} must list seconds, e.g. 5,60,300") from None
    if any(not 0 < v <= 7 * 86400 for v in values):
        raise DeliveryConfigError(f"{name}: each step is more than 0 and at most a week")
    return values


def _networks(raw: str) -> tuple[Network, ...]:
    try:
        return parse_networks(raw)
    except ValueError as exc:
        raise DeliveryConfigError(f"LEADFLOW_DELIVERY_ALLOW_NETWORKS: {exc}") from None
