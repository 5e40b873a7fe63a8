"""Sites: who may embed the widget (Origin allowlist), which flows they run, and
the SHA-256 of the key that reads their data through the read API (optional)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

DEV_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*")
DEMO_SITE = "demo"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: object) -> TypeGuard[str]:
    """True for a SHA-256 hex digest: 64 lowercase hex characters."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Site:
    """``origins`` are exact origins (``https://www.example.com``) or a host with a
    port wildcard (``http://localhost:*``). Empty ``flows`` allows every flow.
    ``api_key_sha256`` is the SHA-256 hex of the site's read-API key (the key
    itself is never stored); None: the site has no key."""

    id: str
    origins: tuple[str, ...]
    flows: tuple[str, ...] = ()
    api_key_sha256: str | None = field(default=None, repr=False)
    # the ``deliveries`` list as written: checked and resolved (secrets and all) by
    # :func:`services.delivery.config.destinations_of`, where they are used
    deliveries: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, compare=False)
    # what the site's key may do: "read" (the read API) and "write" (publish and
    # activate the site's flows through the admin API, docs/admin-api.md)
    scopes: tuple[str, ...] = ("read",)

    def allows_origin(self, origin: str | None) -> bool:
        if not origin:
            return False
        origin = origin.rstrip("/").lower()
        for allowed in self.origins:
            allowed = allowed.rstrip("/").lower()
            if allowed == origin:
                return True
            if allowed.endswith(":*"):
                host = allowed[:-2]
                rest = origin[len(host) :]
                if origin.startswith(host) and (
                    rest == "" or (rest[0] == ":" and rest[1:].isdigit())
                ):
                    return True
        return False

    def allows_flow(self, flow_id: str) -> bool:
        return not self.flows or flow_id in self.flows


KEY_SCOPES = ("read", "write")


class SitesError(ValueError):
    pass


def default_sites() -> dict[str, Site]:
    """The development default: one ``demo`` site, every flow, localhost only."""
    return {DEMO_SITE: Site(DEMO_SITE, DEV_ORIGINS)}


def sites_from_document(doc: Any, source: str) -> dict[str, Site]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("sites"), list):
        raise SitesError(f"{source}: expected a mapping with a 'sites' list")
    sites: dict[str, Site] = {}
    for i, raw in enumerate(doc["sites"]):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            raise SitesError(f"{source}: sites[{i}] needs an 'id'")
        origins = raw.get("origins", [])
        flows = raw.get("flows", [])
        if not _strings(origins) or not origins:
            raise SitesError(f"{source}: site {raw['id']!r}: 'origins' must list origins")
        if not _strings(flows):
            raise SitesError(f"{source}: site {raw['id']!r}: 'flows' must list flow ids")
        if raw["id"] in sites:
            raise SitesError(f"{source}: site {raw['id']!r} is defined twice")
        key_hash = _key_hash(raw, source)
        if key_hash is not None:
            for other in sites.values():
                if other.api_key_sha256 == key_hash:
                    raise SitesError(
                        f"{source}: sites {other.id!r} and {raw['id']!r} have the same API key;"
                        " give each site its own"
                    )
        deliveries = raw.get("deliveries", [])
        if not isinstance(deliveries, list) or not all(isinstance(d, Mapping) for d in deliveries):
            raise SitesError(
                f"{source}: site {raw['id']!r}: 'deliveries' must list destinations"
                " (mappings with a name and a type)"
            )
        sites[raw["id"]] = Site(
            raw["id"],
            tuple(origins),
            tuple(flows),
            key_hash,
            tuple(deliveries),
            _scopes(raw, source),
        )
    return sites


def _scopes(raw: Mapping[str, Any], source: str) -> tuple[str, ...]:
    scopes = raw.get("api_key_scopes", ["read"])
    if not _strings(scopes) or not set(scopes) <= set(KEY_SCOPES):
        raise SitesError(
            f"{source}: site {raw['id']!r}: 'api_key_scopes' must list scopes of"
            f" {', '.join(KEY_SCOPES)}"
        )
    return tuple(sorted(set(scopes)))


def _key_hash(raw: Mapping[str, Any], source: str) -> str | None:
    if "api_key_sha256" not in raw or raw["api_key_sha256"] is None:
        return None
    value = raw["api_key_sha256"]
    if isinstance(value, str):
        value = value.strip().lower()
    if not is_sha256_hex(value):
        raise SitesError(
            f"{source}: site {raw['id']!r}: 'api_key_sha256' must be the SHA-256 hex digest"
            " of the API key (64 hex characters, quoted), not the key itself"
        )
    return value


def _strings(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def load_sites(path: Path | None) -> dict[str, Site]:
    if path is None:
        return default_sites()
    return sites_from_document(yaml.safe_load(path.read_text("utf-8")), str(path))


def load_checked_sites(path: Path | None, flow_ids: Iterable[str]) -> dict[str, Site]:
    """The sites of ``path`` (or the default), refused if any names an unknown flow."""
    sites = load_sites(path)
    problems = check_flows(sites.values(), flow_ids)
    if problems:
        raise SitesError("; ".join(problems))
    return sites


def check_flows(sites: Iterable[Site], flow_ids: Iterable[str]) -> list[str]:
    known = set(flow_ids)
    return [
        f"site {s.id!r} names unknown flow {f!r}" for s in sites for f in s.flows if f not in known
    ]
