"""The studio's settings in the distributed mode, pure parts: the gateway URL its preview
loads the widget from (validation, config.json), the preview page's CSP for that one
origin, and the policy relay's URL, key and answer rules."""

from __future__ import annotations

import json

import pytest

from projector.policy_relay import bearer, policy_base_url, relayed, summary_url
from projector.studio_assets import CSP, preview_csp
from projector.studio_config import (
    EMBEDDED,
    NO_WIDGET,
    gateway_widget,
    parse_base_url,
    studio_config_from_env,
    websocket_origin,
)

WIDGET = "x;\n  const CSS = `.lf { color: red; }`;\n"


def directives(csp: str) -> dict[str, str]:
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in csp.split("; ")}


@pytest.mark.parametrize(
    ("raw", "base", "origin"),
    [
        ("https://chat.example.com", "https://chat.example.com", "https://chat.example.com"),
        ("https://chat.example.com/", "https://chat.example.com", "https://chat.example.com"),
        ("HTTPS://Chat.Example.COM:443/", "https://chat.example.com", "https://chat.example.com"),
        ("http://localhost:8080", "http://localhost:8080", "http://localhost:8080"),
        ("https://example.com/chat/", "https://example.com/chat", "https://example.com"),
        ("http://[::1]:8080", "http://[::1]:8080", "http://[::1]:8080"),
        ("  https://chat.example.com:8443 ", "https://chat.example.com:8443", None),
    ],
)
def test_a_gateway_url_becomes_a_base_and_its_origin(
    raw: str, base: str, origin: str | None
) -> None:
    assert parse_base_url(raw, "X") == (base, origin or base)


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://chat.example.com",
        "javascript:alert(1)",
        "chat.example.com",
        "//chat.example.com",
        "https://",
        "https://user:secret@chat.example.com",
        "https://user@chat.example.com",
        "https://chat.example.com/?x=1",
        "https://chat.example.com/#top",
        "https://chat.example.com:99999",
        "https://chat.example.com/a b",
        "https://chat.example.com/widget.js;x",
        "https://chat.example.com/%2e%2e/",
        "https://ch\u00e4t.example.com",
        "https://chat_example.com",
        "https://chat.example.com 'unsafe-inline'",
    ],
)
def test_anything_but_a_plain_http_or_https_base_url_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="LEADFLOW_STUDIO_WIDGET_URL"):
        gateway_widget(raw)


def test_the_config_names_the_gateways_widget_or_says_why_there_is_no_preview() -> None:
    config = studio_config_from_env("https://chat.example.com/")
    assert json.loads(config.to_json()) == {
        "preview": {"widget_url": "https://chat.example.com/widget.js", "reason": None}
    }
    assert config.widget_origin == "https://chat.example.com"
    for unset in (None, "", "  "):
        assert studio_config_from_env(unset) == NO_WIDGET
    off = json.loads(NO_WIDGET.to_json())["preview"]
    assert off["widget_url"] is None and "LEADFLOW_STUDIO_WIDGET_URL" in off["reason"]
    assert json.loads(EMBEDDED.to_json())["preview"]["widget_url"] == "/widget.js"
    assert EMBEDDED.widget_origin is None


def test_the_preview_csp_allows_the_gateways_origin_for_scripts_and_sockets_only() -> None:
    csp = directives(preview_csp(WIDGET, "https://chat.example.com"))
    assert csp["script-src"] == "'self' https://chat.example.com"
    assert csp["connect-src"] == "'self' https://chat.example.com wss://chat.example.com"
    strict = directives(CSP)
    for name, value in csp.items():
        if name not in ("script-src", "connect-src", "style-src"):
            assert value == strict[name], name
    assert csp["style-src"].startswith("'self' 'sha256-")
    assert "unsafe" not in " ".join(csp.values())


def test_the_embedded_preview_csp_is_unchanged_and_a_non_origin_is_refused() -> None:
    assert preview_csp(WIDGET, None) == preview_csp(WIDGET)
    assert directives(preview_csp(WIDGET))["script-src"] == "'self'"
    http = directives(preview_csp(WIDGET, "http://localhost:8080"))
    assert http["connect-src"] == "'self' http://localhost:8080 ws://localhost:8080"
    for bad in ("https://a.example 'unsafe-eval'", "https://a.example/path", "data:", "*"):
        with pytest.raises(ValueError, match="not an origin"):
            preview_csp(WIDGET, bad)


def test_websocket_origins() -> None:
    assert websocket_origin("https://chat.example.com") == "wss://chat.example.com"
    assert websocket_origin("http://[::1]:8080") == "ws://[::1]:8080"


def test_the_policy_relay_forwards_one_route_to_the_configured_url() -> None:
    base = policy_base_url("http://policy:8091/")
    assert base == "http://policy:8091"
    assert summary_url(base, "solar") == "http://policy:8091/flows/solar/summary"
    # the flow id stays one segment: no path or host of the caller's choosing
    assert (
        summary_url(base, "../admin?x=1") == "http://policy:8091/flows/..%2Fadmin%3Fx%3D1/summary"
    )
    assert summary_url(base, "@evil.example") == "http://policy:8091/flows/%40evil.example/summary"
    with pytest.raises(ValueError, match="LEADFLOW_POLICY_API_URL"):
        policy_base_url("http://admin:pw@policy:8091")


def test_the_relay_reads_bearer_keys_and_passes_on_only_json_answers() -> None:
    assert bearer("Bearer abc ") == "abc"
    assert bearer("bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer ", "Bearerabc"):
        assert bearer(header) is None
    assert relayed(200, "application/json") and relayed(404, "application/json")
    assert relayed(401, "application/json")
    assert not relayed(500, "application/json") and not relayed(503, "application/json")
    assert not relayed(200, "text/html") and not relayed(302, "application/json")
