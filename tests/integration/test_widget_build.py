"""The widget's assets as a gateway builds them at start-up: content hashing,
compression (brotli at quality 11 takes tens of milliseconds a build, too slow
for the unit tier), the loader, and a property test of Accept-Encoding
negotiation."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import brotli
from hypothesis import given
from hypothesis import strategies as st

from gateway.widget_assets import (
    BROTLI,
    GZIP,
    IDENTITY,
    IMMUTABLE_CACHE,
    LOADER_CACHE,
    build,
    negotiate,
    parse_accept_encoding,
)

SOURCE = (Path(__file__).resolve().parents[2] / "gateway" / "static" / "widget.js").read_text()
ALL = (BROTLI, GZIP, IDENTITY)


def test_build_is_deterministic_and_the_digest_follows_the_content() -> None:
    first, again = build(SOURCE), build(SOURCE)
    assert first.digest == again.digest and re.fullmatch(r"[0-9a-f]{16}", first.digest)
    assert first.widget.variants == again.widget.variants  # gzip without a timestamp
    changed = build(SOURCE.replace("Chat with us", "Talk to us"))
    assert changed.digest != first.digest
    assert build(SOURCE + "\n// a comment only\n").digest == first.digest  # minified away


def test_every_variant_decodes_to_the_minified_widget() -> None:
    built = build(SOURCE)
    variants = built.widget.variants
    plain = variants[IDENTITY].body
    assert gzip.decompress(variants[GZIP].body) == plain
    assert brotli.decompress(variants[BROTLI].body) == plain
    assert len(variants[BROTLI].body) < len(variants[GZIP].body) < len(plain) / 2
    etags = {variant.etag for variant in variants.values()}
    assert len(etags) == 3 and all(re.fullmatch(r'"[0-9a-f]{16}"', etag) for etag in etags)
    assert built.widget.cache_control == IMMUTABLE_CACHE
    assert built.loader.cache_control == LOADER_CACHE


def test_the_loader_adds_the_hashed_widget_next_to_itself() -> None:
    built = build(SOURCE)
    loader = built.loader.variants[IDENTITY].body.decode()
    assert built.hashed_name == f"widget.{built.digest}.js"
    assert f"new URL('{built.hashed_name}',s.src)" in loader
    assert "'data-'" in loader and "w.nonce=s.nonce" in loader
    assert len(loader) < 600


@given(st.text(alphabet="brgzipdeflate*identityxq=0.15;, ", max_size=40))
def test_negotiation_never_fails_and_honours_a_positive_q(header: str) -> None:
    chosen = negotiate(header, ALL)
    assert chosen in ALL
    accepted = parse_accept_encoding(header)
    if chosen != IDENTITY:
        assert accepted.get(chosen, accepted.get("*", 0.0)) > 0.0
