"""Prometheus metrics of one gateway (its own registry, so apps never collide).

Labels are bounded sets (frame types, error codes, flow ids of the catalog): never
conversation ids or personal data. Refusal reasons are the protocol's error codes
(schemas/replies.py ``ErrorCode``): ``malformed_frame``, ``frame_too_large`` (oversized),
``rate_limited``, ``unknown_button``, ``wrong_node``, ``stale_command``, ``out_of_order``,
``origin_not_allowed`` (foreign origin), ``invalid_token``, ``invalid_lead``,
``unavailable``...; plus ``flood`` for a socket closed for flooding.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# fine below the < 100 ms press-to-reply target, coarse above it
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "leadflow_gateway_open_connections",
            "Open WebSocket connections",
            registry=self.registry,
        )
        self.max_connections = Gauge(
            "leadflow_gateway_max_connections",
            "The connection cap: upgrades above it get 503 (LEADFLOW_MAX_CONNECTIONS)",
            registry=self.registry,
        )
        self.at_capacity = Gauge(
            "leadflow_gateway_at_capacity",
            "1 while the gateway is at its cap (unready until 95% of it)",
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "leadflow_gateway_loop_lag_seconds",
            "The event loop's worst lateness in the last second (LEADFLOW_SHED_LAG_MS)",
            registry=self.registry,
        )
        self.upgrades_refused = Counter(
            "leadflow_gateway_upgrades_refused_total",
            "WebSocket upgrades answered 503, by reason (at_capacity, overloaded, draining)",
            ["reason"],
            registry=self.registry,
        )
        self.frames = Counter(
            "leadflow_gateway_frames_total",
            "Client frames accepted, by type",
            ["type"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "leadflow_gateway_rejected_total",
            "Refused frames and commands, by error code",
            ["reason"],
            registry=self.registry,
        )
        self.command_latency = Histogram(
            "leadflow_gateway_command_seconds",
            "Command sent to reply received, by command type",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.presses = Counter(
            "leadflow_gateway_presses_total",
            "Button presses sent on, by flow (``resumed``: a conversation resumed by token)",
            ["flow"],
            registry=self.registry,
        )
        self.conversations_started = Counter(
            "leadflow_gateway_conversations_started_total",
            "Conversations started",
            registry=self.registry,
        )
        # the labelled children of the per-frame series, kept: ``labels()`` checks and
        # locks on every call, which a visitor's start paid three times
        self._frames: dict[str, Any] = {}
        self._latencies: dict[str, Any] = {}

    def count_frame(self, kind: str) -> None:
        child = self._frames.get(kind)
        if child is None:
            child = self._frames[kind] = self.frames.labels(kind)
        child.inc()

    def observe_command(self, kind: str, seconds: float) -> None:
        child = self._latencies.get(kind)
        if child is None:
            child = self._latencies[kind] = self.command_latency.labels(kind)
        child.observe(seconds)
