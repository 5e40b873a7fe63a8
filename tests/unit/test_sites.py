"""Sites: the Origin allowlist, flow restrictions and the sites file format."""

from __future__ import annotations

from typing import Any

import pytest

from services.sites import (
    DEV_ORIGINS,
    Site,
    SitesError,
    check_flows,
    default_sites,
    sites_from_document,
)

SHOP = Site("shop", ("https://shop.example",), ("solar-quote",))
DEV = Site("demo", DEV_ORIGINS)


@pytest.mark.parametrize(
    "origin",
    ["https://shop.example", "HTTPS://Shop.Example", "https://shop.example/"],
)
def test_exact_origin_is_allowed_case_insensitively_and_with_trailing_slash(origin: str) -> None:
    """Regression: origin matching ignores case and a trailing slash."""
    assert SHOP.allows_origin(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://shop.example",  # scheme mismatch
        "https://shop.example:8443",  # other port
        "https://shop.example.evil.com",  # suffix attack
        "https://evil.example",
        "https://sub.shop.example",
    ],
)
def test_other_origins_are_refused(origin: str) -> None:
    """Regression: anything but the exact origin (scheme, host, port) is refused."""
    assert not SHOP.allows_origin(origin)


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:8080", "http://localhost:1", "http://127.0.0.1:5173", "http://[::1]:8080"],
)
def test_port_wildcard_allows_any_numeric_port(origin: str) -> None:
    """Regression: ``host:*`` entries allow the host on any port."""
    assert DEV.allows_origin(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost.evil.com",
        "http://localhost.evil.com:8080",
        "http://localhost:80abc",
        "http://localhost:8080@evil.com",
        "http://localhost:",
        "https://localhost:8080",
        "http://localhostx:8080",
    ],
)
def test_port_wildcard_refuses_lookalikes(origin: str) -> None:
    """Regression: the port wildcard must not turn into a host prefix match."""
    assert not DEV.allows_origin(origin)


@pytest.mark.parametrize("origin", [None, ""])
def test_missing_origin_is_refused(origin: str | None) -> None:
    """Regression: no Origin header (a non-browser client) is never allowed."""
    assert not DEV.allows_origin(origin)
    assert not SHOP.allows_origin(origin)


def test_allows_flow_restricts_only_when_flows_are_listed() -> None:
    """Regression: an empty flows list allows every flow; a list allows only its members."""
    assert SHOP.allows_flow("solar-quote")
    assert not SHOP.allows_flow("saas-demo")
    assert DEV.allows_flow("anything")


def test_default_sites_is_one_localhost_demo_site() -> None:
    """Regression: the dev default must stay localhost-only so it is safe to expose."""
    sites = default_sites()
    assert list(sites) == ["demo"]
    assert sites["demo"].allows_origin("http://localhost:8080")
    assert not sites["demo"].allows_origin("https://example.com")


def test_sites_from_document_builds_sites() -> None:
    """Regression: a well-formed sites document yields Site objects keyed by id."""
    doc = {
        "sites": [
            {"id": "shop", "origins": ["https://shop.example"], "flows": ["solar-quote"]},
            {"id": "blog", "origins": ["https://blog.example", "http://localhost:*"]},
        ]
    }
    sites = sites_from_document(doc, "sites.yaml")
    assert sites["shop"] == SHOP
    assert sites["blog"] == Site("blog", ("https://blog.example", "http://localhost:*"), ())


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "sites.yaml: expected a mapping with a 'sites' list"),
        ([], "sites.yaml: expected a mapping with a 'sites' list"),
        ({"sites": {"id": "x"}}, "sites.yaml: expected a mapping with a 'sites' list"),
        ({"sites": [{"origins": ["https://a.example"]}]}, "sites.yaml: sites[0] needs an 'id'"),
        ({"sites": ["shop"]}, "sites.yaml: sites[0] needs an 'id'"),
        ({"sites": [{"id": "a"}]}, "sites.yaml: site 'a': 'origins' must list origins"),
        ({"sites": [{"id": "a", "origins": []}]}, "site 'a': 'origins' must list origins"),
        (
            {"sites": [{"id": "a", "origins": "https://a.example"}]},
            "site 'a': 'origins' must list origins",
        ),
        (
            {"sites": [{"id": "a", "origins": ["https://a.example"], "flows": "solar-quote"}]},
            "sites.yaml: site 'a': 'flows' must list flow ids",
        ),
        (
            {"sites": [{"id": "a", "origins": ["https://a.example"], "flows": [1]}]},
            "site 'a': 'flows' must list flow ids",
        ),
    ],
)
def test_sites_from_document_errors_name_the_file_and_the_problem(doc: Any, message: str) -> None:
    """Regression: a bad sites file fails with a message naming the file, site and field."""
    with pytest.raises(SitesError) as info:
        sites_from_document(doc, "sites.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("sites.yaml: ")


def test_check_flows_reports_every_unknown_flow() -> None:
    """Regression: sites naming flows the catalog lacks are reported, one line each."""
    sites = [SHOP, Site("b", ("https://b.example",), ("saas-demo", "ghost", "phantom")), DEV]
    problems = check_flows(sites, ["solar-quote", "saas-demo"])
    assert problems == [
        "site 'b' names unknown flow 'ghost'",
        "site 'b' names unknown flow 'phantom'",
    ]
    assert check_flows(sites, ["solar-quote", "saas-demo", "ghost", "phantom"]) == []


def test_allowlist_entry_with_trailing_slash_still_matches() -> None:
    """An operator writing `https://shop.example/` means the origin `https://shop.example`."""
    assert Site("s", ("https://shop.example/",)).allows_origin("https://shop.example")


def test_a_site_defined_twice_is_refused() -> None:
    """Two sites with one id would silently replace each other's allowlist."""
    doc = {"sites": [{"id": "a", "origins": ["https://a.example"]}] * 2}
    with pytest.raises(SitesError, match="defined twice"):
        sites_from_document(doc, "sites.yaml")
