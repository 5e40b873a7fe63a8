"""The studio's static files, pure part: read once, ETag and gzip them, and the headers.

The studio (docs/admin-api.md, "Studio") is a static page with its own JS and CSS and
one vendored bundle (scripts/build-studio); everything it knows comes from the admin
API with the key the person types, so the files carry no secret and are the same for
everyone. They are served under a strict Content-Security-Policy: scripts and styles
from the studio's own origin only (no inline script, no eval), requests to the same
origin only, no form submission at all (the key form is handled by script, and were
script off the key could not leave in a URL), no framing. Every file is revalidated
on each load (``no-cache`` with a strong ETag): a release is seen at once, and an
unchanged file costs a 304.

Files are looked up by name in a table built at start-up, never by joining a request
path to a directory, so no request reaches a file that is not in the studio folder.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from projector.studio_config import websocket_origin

STUDIO_DIR = Path(__file__).resolve().parent / "static" / "studio"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
CACHE_CONTROL = "no-cache"
WIDGET_JS = Path(__file__).resolve().parents[1] / "gateway" / "static" / "widget.js"
PREVIEW_PAGE = "preview.html"
MIN_GZIP_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Asset:
    """One file: its bytes, their gzip (None when not worth it) and a strong ETag."""

    content_type: str
    body: bytes
    gzipped: bytes | None
    etag: str


def make_asset(name: str, body: bytes) -> Asset:
    """``name``'s suffix picks the content type (a ValueError for any other suffix)."""
    suffix = Path(name).suffix
    if suffix not in CONTENT_TYPES:
        raise ValueError(f"the studio serves no {suffix or 'suffix-less'} file: {name}")
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    worth = len(body) >= MIN_GZIP_BYTES and len(packed) < len(body)
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(CONTENT_TYPES[suffix], body, packed if worth else None, etag)


def load_assets(root: Path = STUDIO_DIR) -> Mapping[str, Asset]:
    """Every servable file under ``root`` by its path relative to it (``/``-separated);
    files of other types are left out."""
    table: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            name = path.relative_to(root).as_posix()
            table[name] = make_asset(name, path.read_bytes())
    return MappingProxyType(table)


def asset_name(tail: str) -> str:
    """The table name for the part of the URL after ``/studio/`` (the page for ``""``)."""
    return tail or "index.html"


def widget_style_sources(widget_js: str) -> str:
    """CSP sources (``'sha256-…'``) for the stylesheet the widget puts in its shadow root,
    as the demo page's policy names it (gateway/app.py): the preview page embeds the
    real widget."""
    styles = re.findall(r"const CSS = `(.*?)`;", widget_js, re.S)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in styles
    )


def preview_csp(widget_js: str, widget_origin: str | None = None) -> str:
    """The studio's policy, but for the widget's own stylesheet on the preview page and,
    when the widget comes from a gateway at ``widget_origin`` (the distributed mode:
    :mod:`projector.studio_config`), its script and its connections (the WebSocket's
    ``ws``/``wss`` form too) from that one origin."""
    csp = CSP.replace("style-src 'self'", f"style-src 'self' {widget_style_sources(widget_js)}")
    if widget_origin is None:
        return csp
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", widget_origin):
        raise ValueError(f"not an origin: {widget_origin!r}")  # nothing else enters the CSP
    sockets = websocket_origin(widget_origin)
    csp = csp.replace("script-src 'self'", f"script-src 'self' {widget_origin}")
    return csp.replace("connect-src 'self'", f"connect-src 'self' {widget_origin} {sockets}")


def security_headers(csp: str = CSP) -> dict[str, str]:
    """The headers of every studio response, found or not."""
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": CACHE_CONTROL,
    }


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` names this ETag (or ``*``), weak comparison as RFC 9110 asks."""
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def accepts_gzip(accept_encoding: str | None) -> bool:
    """The client accepts gzip with a non-zero q."""
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            params = params.strip()
            q = params.removeprefix("q=").strip() if params.startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False
