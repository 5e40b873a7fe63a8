"""The widget's delivery, pure part: minify, content-hash and precompress once; negotiate.

The customer's snippet names a stable URL, ``/widget.js``. That URL serves a tiny
*loader* (cached for minutes, revalidated by ETag) which adds a second script
element for the real widget under a content-hashed name, ``/widget.<digest>.js``,
cached for a year as immutable: a returning visitor downloads nothing but (at
most) a 304 for the loader, and a release reaches every visitor within the
loader's max-age. The loader copies the snippet's ``data-*`` attributes (and its
CSP nonce) onto the element it adds, so the widget reads its configuration as
before; the widget resolves ``/ws`` against its own URL, which is in the same
directory as the loader's.

Everything here is computed once, at start-up (``build``): minification with
rjsmin (whitespace and comments only: identifiers, strings and template literals
are kept byte for byte, so the demo page's CSP hash of the widget's stylesheet
still matches), gzip (level 9, mtime 0: every gateway builds the same bytes) and
brotli (quality 11). Requests only pick a prepared variant (``negotiate``).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import brotli
import rjsmin

IDENTITY = "identity"
GZIP = "gzip"
BROTLI = "br"
# Preference among codings the client accepts equally (q-value ties): smallest first.
PREFERENCE = (BROTLI, GZIP, IDENTITY)
UNNAMED_IDENTITY = 1e-6  # below any q a client can name (3 decimals at most)
DIGEST_CHARS = 16  # 64 bits of SHA-256: the hashed file name
LOADER_CACHE = "public, max-age=300"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
HEADER = "/*! Leadflow chat widget (Apache-2.0) */\n"
# The loader, minified by hand; HASHED_NAME is the hashed file, next to the loader.
LOADER_TEMPLATE = (
    "/*! Leadflow widget loader: loads the content-hashed widget */\n"
    "(function(){var s=document.currentScript||"
    "document.querySelector('script[src*=\"widget.js\"][data-flow]');if(!s)return;"
    "var w=document.createElement('script');w.src=new URL('HASHED_NAME',s.src).href;"
    "for(var i=0;i<s.attributes.length;i++){var a=s.attributes[i];"
    "if(a.name.slice(0,5)==='data-')w.setAttribute(a.name,a.value)}"
    "if(s.nonce)w.nonce=s.nonce;(document.head||document.documentElement).appendChild(w)})();\n"
)


@dataclass(frozen=True)
class Variant:
    """One encoding of an asset: its bytes and a strong ETag of exactly those bytes."""

    encoding: str
    body: bytes
    etag: str


@dataclass(frozen=True)
class Asset:
    """A script prepared in every encoding, with the Cache-Control it is served with."""

    variants: Mapping[str, Variant]
    cache_control: str

    def select(self, accept_encoding: str | None) -> Variant:
        return self.variants[negotiate(accept_encoding, tuple(self.variants))]


@dataclass(frozen=True)
class WidgetAssets:
    """The hashed widget and its loader, as built at start-up."""

    digest: str
    widget: Asset
    loader: Asset
    source_bytes: int  # the unminified widget.js, for the record

    @property
    def hashed_name(self) -> str:
        return hashed_name(self.digest)


def hashed_name(digest: str) -> str:
    return f"widget.{digest}.js"


def minify(source: str) -> str:
    """The widget without comments and needless whitespace (rjsmin; no renaming)."""
    return HEADER + str(rjsmin.jsmin(source, keep_bang_comments=False)).strip() + "\n"


def content_digest(data: bytes) -> str:
    """The first DIGEST_CHARS hex digits of the SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def loader_source(name: str) -> str:
    return LOADER_TEMPLATE.replace("HASHED_NAME", name)


def compress(data: bytes) -> dict[str, bytes]:
    """``data`` in each coding: deterministic, so every gateway serves the same bytes."""
    return {
        BROTLI: bytes(brotli.compress(data, mode=brotli.MODE_TEXT, quality=11)),
        GZIP: gzip.compress(data, compresslevel=9, mtime=0),
        IDENTITY: data,
    }


def prepare(data: bytes, cache_control: str) -> Asset:
    variants = {
        coding: Variant(coding, body, f'"{content_digest(body)}"')
        for coding, body in compress(data).items()
    }
    return Asset(MappingProxyType(variants), cache_control)


def build(source: str) -> WidgetAssets:
    """Minify, hash and compress the widget and its loader (start-up work, ~0.1 s)."""
    minified = minify(source).encode()
    digest = content_digest(minified)
    loader = loader_source(hashed_name(digest)).encode()
    return WidgetAssets(
        digest=digest,
        widget=prepare(minified, IMMUTABLE_CACHE),
        loader=prepare(loader, LOADER_CACHE),
        source_bytes=len(source.encode()),
    )


# ------------------------------------------------------------------ negotiation


def parse_accept_encoding(header: str) -> dict[str, float]:
    """Accept-Encoding as {coding: q} (RFC 9110 12.5.3); a malformed q-value drops
    its entry, x-gzip is gzip, and the highest q wins when a coding is repeated."""
    accepted: dict[str, float] = {}
    for item in header.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        coding = coding.lower()
        if not coding:
            continue
        if coding == "x-gzip":
            coding = GZIP
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            accepted[coding] = max(q, accepted.get(coding, 0.0))
    return accepted


def negotiate(accept_encoding: str | None, available: tuple[str, ...]) -> str:
    """The coding to send: the available one with the highest q, ties broken by
    PREFERENCE. No header means identity (what a client that sends none, e.g. a
    plain ``curl``, can read); identity is also sent when nothing else is acceptable,
    even if the client refused it (a 406 would only break the page)."""
    if accept_encoding is None:
        return IDENTITY
    accepted = parse_accept_encoding(accept_encoding)
    wildcard = accepted.get("*")

    def quality(coding: str) -> float:
        if coding in accepted:
            return accepted[coding]
        if wildcard is not None:
            return wildcard
        # identity is acceptable unless refused, but any coding the client named wins
        return UNNAMED_IDENTITY if coding == IDENTITY else 0.0

    ranked = [coding for coding in PREFERENCE if coding in available]
    best = max(ranked, key=lambda coding: (quality(coding), -ranked.index(coding)))
    return best if quality(best) > 0.0 else IDENTITY


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match against ``etag`` with the weak comparison RFC 9110 13.1.2 asks for."""
    if if_none_match is None:
        return False
    candidates = (tag.strip() for tag in if_none_match.split(","))
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in candidates)
