"""Bytes over the wire for the widget, per encoding, against the unminified file.

Plain HTTP requests to the running server (aiohttp, no decompression) with one
``Accept-Encoding`` each; the header bytes are the status line and headers as
received. The unminified ``widget.js`` is what the gateway sent before it served a
loader and a minified, precompressed widget (identity, no Content-Encoding).
"""

from __future__ import annotations

import asyncio
import gzip
import re
from pathlib import Path
from typing import Any

import aiohttp
import brotli

SOURCE = Path(__file__).resolve().parents[2] / "gateway" / "static" / "widget.js"
ENCODINGS = {"identity": "identity", "gzip": "gzip", "br": "br"}
HASHED = re.compile(r"widget\.[0-9a-f]{16}\.js")


async def _fetch(session: aiohttp.ClientSession, url: str, accept: str) -> dict[str, Any]:
    async with session.get(url, headers={"Accept-Encoding": accept}) as response:
        body = await response.read()
        header_bytes = len(f"HTTP/1.1 {response.status} {response.reason}\r\n") + sum(
            len(name) + len(value) + 4 for name, value in response.raw_headers
        )
        return {
            "status": response.status,
            "content_encoding": response.headers.get("Content-Encoding", "identity"),
            "body_bytes": len(body),
            "header_bytes": header_bytes + 2,
            "body": body,
        }


async def _measure(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        loader = await _fetch(session, f"{base_url}/widget.js", "identity")
        match = HASHED.search(loader["body"].decode())
        if match is None:
            raise AssertionError("the loader names no hashed widget")
        rows: dict[str, Any] = {"loader": {}, "widget": {}}
        for label, accept in ENCODINGS.items():
            for kind, url in (("loader", "/widget.js"), ("widget", f"/{match.group()}")):
                row = await _fetch(session, f"{base_url}{url}", accept)
                if row["content_encoding"] != label:
                    raise AssertionError(f"{url} with {accept}: got {row['content_encoding']}")
                row.pop("body")
                rows[kind][label] = row
        return {"hashed_name": match.group(), **rows}


def wire_bytes(base_url: str) -> dict[str, Any]:
    """The loader's and the widget's bytes per encoding, and the unminified baseline."""
    measured = asyncio.run(_measure(base_url))
    source = SOURCE.read_bytes()
    measured["unminified"] = {
        "identity": len(source),
        # for reference: the unminified file compressed as the widget is
        "gzip": len(gzip.compress(source, compresslevel=9, mtime=0)),
        "br": len(brotli.compress(source, mode=brotli.MODE_TEXT, quality=11)),
    }
    return measured
