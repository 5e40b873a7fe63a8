"""Typed application keys of the gateway app."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.connection import GatewayContext
from services.pushes import Pushes

CONTEXT = web.AppKey("context", GatewayContext)
READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")
PUSHES = web.AppKey("pushes", Pushes)  # open sockets by conversation: a fired timer's messages
