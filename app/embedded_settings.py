"""Settings of the embedded mode (``leadflow serve``), from the environment.

| variable | default | meaning |
|---|---|---|
| LEADFLOW_DATA_DIR | ./.leadflow | event log, keys, read models, resume secret |
| LEADFLOW_FLOWS_DIR | examples/flows | flow files to serve |
| LEADFLOW_SITES_FILE | (none: a `demo` site, localhost origins) | sites and their origins |
| LEADFLOW_SQLITE_SYNCHRONOUS | NORMAL | FULL also survives power loss, at a latency cost |
| LEADFLOW_DEMO_PAGE | on | `/` serves the demo page; off: 404 |
| LEADFLOW_METRICS_PORT | (off) | serve /metrics on this port (never on the public one) |
plus the gateway's LEADFLOW_* variables (see gateway/config.py and docs/protocol.md) and
lead delivery's (services/delivery/settings.py and docs/delivery.md).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import GatewaySettings
from services.catalog import EXAMPLE_FLOWS_DIR
from services.delivery.settings import DeliveryEnv
from services.http_auth import check_admin_sha256

SECRET_FILE = "resume-secret"


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    data_dir: Path
    flows_dir: Path
    sites_file: Path | None
    sqlite_synchronous: str
    gateway: GatewaySettings
    admin_key_sha256: str | None = None
    delivery: DeliveryEnv = field(default_factory=DeliveryEnv)
    # the environment the destinations' secrets are read from (secrets_env: NAME)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)


def resume_secret(data_dir: Path) -> bytes:
    """The data directory's own random secret, created once with mode 0600."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _reachable(host: str) -> str:
    """A host a link can name: a wildcard listen address is not one."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: str) -> EmbeddedSettings:
    env = dict(os.environ if env is None else env)
    env.update({f"LEADFLOW_{k.upper()}": v for k, v in overrides.items() if v is not None})
    data_dir = Path(env.get("LEADFLOW_DATA_DIR", ".leadflow"))
    sites = env.get("LEADFLOW_SITES_FILE")
    synchronous = env.get("LEADFLOW_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError("LEADFLOW_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
    secret = b"" if env.get("LEADFLOW_RESUME_SECRET") else resume_secret(data_dir)
    gateway = GatewaySettings.from_env(secret, env, metrics_port=None, demo_page=True)
    return EmbeddedSettings(
        data_dir=data_dir,
        flows_dir=Path(env.get("LEADFLOW_FLOWS_DIR", str(EXAMPLE_FLOWS_DIR))),
        sites_file=Path(sites) if sites else None,
        sqlite_synchronous=synchronous,
        # the demo page on, /metrics only on LEADFLOW_METRICS_PORT when set
        gateway=gateway,
        admin_key_sha256=check_admin_sha256(env.get("LEADFLOW_ADMIN_API_KEY_SHA256") or None),
        delivery=DeliveryEnv.from_env(env, f"http://{_reachable(gateway.host)}:{gateway.port}"),
        environ=env,
    )
