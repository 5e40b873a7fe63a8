"""Blocking HTTP GETs for tests of real servers (health, metrics, the read API)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def get_json(url: str, key: str | None = None) -> tuple[int, Any]:
    """(status, decoded body) of a GET, with ``key`` as a bearer token; errors too."""
    request = urllib.request.Request(url)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")
