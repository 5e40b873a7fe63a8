"""API keys of the read API: how they are made, stored and checked. Pure.

A key is a random URL-safe string shown once to whoever creates it; only its
SHA-256 hex digest is kept (``api_key_sha256`` of a site in the sites file,
or the admin digest handed to :func:`projector.api.create_read_api`). Keys are
high-entropy random strings, so a plain (unsalted) SHA-256 is enough: there is
nothing to brute-force from a leaked digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.sites import Site, is_sha256_hex

KEY_BYTES = 32  # 256 bits of randomness: 43 URL-safe characters


@dataclass(frozen=True, slots=True)
class Principal:
    """Whom a key belongs to: a site (``site_id``) or the admin (``site_id`` None).
    ``write``: the key may publish and activate flows (the admin's always may; a
    site's when its ``api_key_scopes`` has ``write``)."""

    site_id: str | None
    write: bool = False

    @property
    def is_admin(self) -> bool:
        return self.site_id is None

    def may_read_site(self, site_id: str) -> bool:
        return self.site_id is None or self.site_id == site_id


ADMIN = Principal(None, write=True)


def new_api_key() -> str:
    """A fresh random API key (URL-safe, no padding)."""
    return secrets.token_urlsafe(KEY_BYTES)


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest of ``key``: what the sites file stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def authenticate(
    presented: str | None,
    sites: Mapping[str, Site] | Iterable[Site],
    admin_sha256: str | None,
) -> Principal | None:
    """The principal whose key ``presented`` is, or None (no key, unknown key).

    Every site's digest (and the admin's) is compared, in constant time, even
    after a match: how long this takes does not say which site (if any) the
    key belongs to. A key that matches more than one principal (a
    misconfiguration the sites loader refuses) authenticates nobody.
    """
    if not presented:
        return None
    digest = hash_api_key(presented).encode()
    candidates = sites.values() if isinstance(sites, Mapping) else sites
    matches: list[Principal] = []
    for site in candidates:
        stored = site.api_key_sha256
        if stored is not None and hmac.compare_digest(digest, stored.encode()):
            matches.append(Principal(site.id, write="write" in site.scopes))
    if admin_sha256 is not None and hmac.compare_digest(digest, admin_sha256.encode()):
        matches.append(ADMIN)
    return matches[0] if len(matches) == 1 else None


def check_admin_sha256(admin_sha256: str | None) -> str | None:
    """The admin digest, normalised to lowercase; ValueError if it is not one."""
    if admin_sha256 is None:
        return None
    value = admin_sha256.strip().lower()
    if not is_sha256_hex(value):
        raise ValueError(
            "the admin key must be given as its SHA-256 hex digest (64 hex characters)"
        )
    return value
