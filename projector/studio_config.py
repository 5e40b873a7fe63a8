"""The studio's per-deployment settings, pure part: where its preview gets the widget.

The preview page (``/studio/preview.html``) plays a draft in the real widget, and the
widget opens its WebSocket next to the URL it was loaded from (``/ws`` beside
``/widget.js``). Under ``leadflow serve`` the gateway is the studio's own server, so
the page loads ``/widget.js`` of its own origin. In the distributed mode the studio is
served by the projector, which has no WebSocket: the page must load the widget from a
gateway, named by ``LEADFLOW_STUDIO_WIDGET_URL`` (the gateways' public base URL, e.g.
``https://chat.example.com``); without it there is no preview, and the page says why.

The page learns this from ``/studio/config.json`` (built here once, at start-up: no
inline script, the CSP stays strict), and the preview page's CSP allows scripts and
connections from that one origin and no other (:func:`projector.studio_assets.preview_csp`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

WIDGET_URL_ENV = "LEADFLOW_STUDIO_WIDGET_URL"
SAME_ORIGIN_WIDGET = "/widget.js"
NO_PREVIEW_REASON = (
    "No preview here: this server has no widget. Set LEADFLOW_STUDIO_WIDGET_URL on the "
    "projector to the gateways' public URL (docs/admin-api.md, Studio)."
)
# a path prefix the gateways are mounted under (a proxy's), plain characters only
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*/?")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]")


@dataclass(frozen=True, slots=True)
class StudioConfig:
    """What the studio page is told (``config.json``) and what its preview CSP allows.

    ``widget_url`` is the widget script the preview loads (None: no preview, with
    ``reason``); ``widget_origin`` is the gateway's origin when it is not the studio's
    own (None under ``leadflow serve``)."""

    widget_url: str | None
    widget_origin: str | None = None
    reason: str | None = None

    def to_json(self) -> bytes:
        preview = {"widget_url": self.widget_url, "reason": self.reason}
        return json.dumps({"preview": preview}, sort_keys=True).encode()


EMBEDDED = StudioConfig(SAME_ORIGIN_WIDGET)  # leadflow serve: its own gateway
NO_WIDGET = StudioConfig(None, None, NO_PREVIEW_REASON)


def gateway_widget(base_url: str) -> StudioConfig:
    """The config of a studio whose preview loads the widget from ``base_url``, the
    gateways' public base URL (http or https, a host, an optional path prefix; no
    credentials, query or fragment). ValueError says what is wrong with it."""
    base, origin = parse_base_url(base_url, WIDGET_URL_ENV)
    return StudioConfig(f"{base}/widget.js", origin)


def studio_config_from_env(value: str | None) -> StudioConfig:
    """``LEADFLOW_STUDIO_WIDGET_URL`` as the projector reads it (unset or empty: no preview)."""
    return gateway_widget(value) if value and value.strip() else NO_WIDGET


def parse_base_url(raw: str, name: str) -> tuple[str, str]:
    """``raw`` as a base URL (without a trailing ``/``) and its origin, or a ValueError.

    Only ``http``/``https`` with a host; no user or password (they would end up in a
    page and in logs), no query or fragment (the base gets paths appended), and a path
    only of plain segments."""
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # a ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"{name}: not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{name}: only http:// or https:// URLs, not {text!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(f"{name}: no credentials in the URL")
    host = (parts.hostname or "").lower()
    if not host or any(c.isspace() for c in text):
        raise ValueError(f"{name}: a host is required, no spaces: {text!r}")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{name}: no query or fragment: {text!r}")
    if not _PATH.fullmatch(parts.path):
        raise ValueError(f"{name}: a path of plain segments only: {parts.path!r}")
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if not _HOST.fullmatch(host):
        raise ValueError(f"{name}: an ASCII host name (punycode) or an IP address: {host!r}")
    default = port is None or port == (443 if scheme == "https" else 80)
    origin = f"{scheme}://{host}" + ("" if default else f":{port}")
    return origin + parts.path.rstrip("/"), origin


def websocket_origin(origin: str) -> str:
    """The ``ws``/``wss`` origin the widget loaded from ``origin`` connects to."""
    scheme, _, rest = origin.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}"
