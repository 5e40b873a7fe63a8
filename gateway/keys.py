"""Typed application keys of the gateway app."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.connection import GatewayContext

CONTEXT = web.AppKey("context", GatewayContext)
READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")
