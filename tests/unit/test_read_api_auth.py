"""API keys of the read API: hashing, checking, and the sites file's key digests."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import pytest

from services.http_auth import (
    ADMIN,
    Principal,
    authenticate,
    check_admin_sha256,
    hash_api_key,
    new_api_key,
)
from services.sites import Site, SitesError, is_sha256_hex, sites_from_document

ACME_KEY, GLOBEX_KEY, ADMIN_KEY = "acme-secret-key", "globex-secret-key", "admin-secret-key"
SITES = {
    "acme": Site("acme", ("https://acme.example",), (), hash_api_key(ACME_KEY)),
    "globex": Site("globex", ("https://globex.example",), ("saas-demo",), hash_api_key(GLOBEX_KEY)),
    "initech": Site("initech", ("https://initech.example",)),  # no key: admin only
}
ADMIN_HASH = hash_api_key(ADMIN_KEY)


def test_hash_api_key_is_the_sha256_hex_of_the_utf8_key() -> None:
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert hash_api_key("clé") == hashlib.sha256("clé".encode()).hexdigest()
    assert is_sha256_hex(hash_api_key(new_api_key()))


def test_new_api_keys_are_long_url_safe_and_distinct() -> None:
    keys = {new_api_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(key) >= 43
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key)


def test_a_site_key_authenticates_its_site() -> None:
    assert authenticate(ACME_KEY, SITES, ADMIN_HASH) == Principal("acme")
    assert authenticate(GLOBEX_KEY, SITES, ADMIN_HASH) == Principal("globex")
    assert authenticate(GLOBEX_KEY, list(SITES.values()), None) == Principal("globex")


def test_the_admin_key_authenticates_the_admin() -> None:
    principal = authenticate(ADMIN_KEY, SITES, ADMIN_HASH)
    assert principal == ADMIN
    assert principal is not None and principal.is_admin


@pytest.mark.parametrize(
    "presented",
    [None, "", "wrong", ACME_KEY + " ", ACME_KEY.upper(), hash_api_key(ACME_KEY), ADMIN_HASH],
)
def test_anything_but_a_known_key_authenticates_nobody(presented: str | None) -> None:
    """Not even a stored digest presented as the key: the digest is not the key."""
    assert authenticate(presented, SITES, ADMIN_HASH) is None


def test_without_an_admin_digest_there_is_no_admin() -> None:
    assert authenticate(ADMIN_KEY, SITES, None) is None


def test_a_key_of_two_principals_authenticates_nobody() -> None:
    """Misconfiguration (the sites loader refuses it): never guess which one is meant."""
    twins = {
        "a": Site("a", ("https://a.example",), (), hash_api_key("shared")),
        "b": Site("b", ("https://b.example",), (), hash_api_key("shared")),
    }
    assert authenticate("shared", twins, None) is None
    assert authenticate(ACME_KEY, SITES, hash_api_key(ACME_KEY)) is None


@pytest.mark.parametrize("presented", [ACME_KEY, GLOBEX_KEY, ADMIN_KEY, "wrong"])
def test_every_digest_is_compared_whichever_key_matches(
    presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit: the number of comparisons does not say which site matched."""
    calls: list[bytes] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    authenticate(presented, SITES, ADMIN_HASH)
    expected = [hash_api_key(ACME_KEY), hash_api_key(GLOBEX_KEY), ADMIN_HASH]
    assert [c.decode() for c in calls] == expected


def test_principal_reads_its_own_site_and_the_admin_every_site() -> None:
    acme = Principal("acme")
    assert acme.may_read_site("acme")
    assert not acme.may_read_site("globex")
    assert not acme.is_admin
    assert ADMIN.may_read_site("acme") and ADMIN.may_read_site("anything")


def test_check_admin_sha256_normalises_and_refuses_non_digests() -> None:
    assert check_admin_sha256(None) is None
    assert check_admin_sha256(ADMIN_HASH.upper()) == ADMIN_HASH
    assert check_admin_sha256(f" {ADMIN_HASH}\n") == ADMIN_HASH
    with pytest.raises(ValueError, match="SHA-256 hex digest"):
        check_admin_sha256(ADMIN_KEY)


# -- the sites file ------------------------------------------------------------


def _doc(**site: Any) -> dict[str, Any]:
    return {"sites": [{"id": "shop", "origins": ["https://shop.example"], **site}]}


def test_sites_file_carries_the_key_digest() -> None:
    digest = hash_api_key("k")
    site = sites_from_document(_doc(api_key_sha256=digest), "sites.yaml")["shop"]
    assert site.api_key_sha256 == digest
    assert authenticate("k", {"shop": site}, None) == Principal("shop")


def test_sites_file_digest_is_optional_and_normalised() -> None:
    assert sites_from_document(_doc(), "s.yaml")["shop"].api_key_sha256 is None
    assert sites_from_document(_doc(api_key_sha256=None), "s.yaml")["shop"].api_key_sha256 is None
    upper = hash_api_key("k").upper()
    site = sites_from_document(_doc(api_key_sha256=upper), "s.yaml")["shop"]
    assert site.api_key_sha256 == hash_api_key("k")


def test_a_site_without_a_key_field_equals_the_old_site() -> None:
    """Existing code building Site(id, origins, flows) keeps working."""
    assert Site("s", ("https://s.example",)).api_key_sha256 is None


def test_the_digest_is_not_in_a_sites_repr() -> None:
    digest = hash_api_key("k")
    assert digest not in repr(Site("s", ("https://s.example",), (), digest))


@pytest.mark.parametrize(
    "value",
    [
        "a-plain-api-key",  # the key itself instead of its digest
        new_api_key(),
        "ab" * 31,  # too short
        "ab" * 33,  # too long
        "g" * 64,  # not hex
        12345,
        ["ab" * 32],
        "",
    ],
)
def test_sites_file_refuses_anything_but_a_digest(value: Any) -> None:
    with pytest.raises(SitesError) as info:
        sites_from_document(_doc(api_key_sha256=value), "sites.yaml")
    message = str(info.value)
    assert message.startswith("sites.yaml: site 'shop': 'api_key_sha256' must be")
    assert "SHA-256 hex digest" in message
    if isinstance(value, str) and value:
        assert value not in message  # a pasted key is not echoed into logs


def test_two_sites_with_one_key_are_refused() -> None:
    digest = hash_api_key("shared")
    doc = {
        "sites": [
            {"id": "a", "origins": ["https://a.example"], "api_key_sha256": digest},
            {"id": "b", "origins": ["https://b.example"], "api_key_sha256": digest.upper()},
        ]
    }
    with pytest.raises(SitesError, match="sites 'a' and 'b' have the same API key"):
        sites_from_document(doc, "sites.yaml")


def test_a_site_key_writes_only_with_the_write_scope_and_the_admin_always() -> None:
    digest = hash_api_key("k")
    reader = sites_from_document(_doc(api_key_sha256=digest), "s.yaml")["shop"]
    writer = sites_from_document(
        _doc(api_key_sha256=digest, api_key_scopes=["write", "read", "write"]), "s.yaml"
    )["shop"]
    assert reader.scopes == ("read",) and writer.scopes == ("read", "write")
    assert authenticate("k", {"shop": reader}, None) == Principal("shop", write=False)
    assert authenticate("k", {"shop": writer}, None) == Principal("shop", write=True)
    admin = authenticate(ADMIN_KEY, SITES, ADMIN_HASH)
    assert admin is not None and admin.write and admin.is_admin


@pytest.mark.parametrize("scopes", [["admin"], "write", [1], ["read", None]])
def test_sites_file_refuses_unknown_scopes(scopes: Any) -> None:
    with pytest.raises(SitesError, match="'api_key_scopes' must list scopes of read, write"):
        sites_from_document(_doc(api_key_scopes=scopes), "sites.yaml")
