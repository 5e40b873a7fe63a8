"""Prometheus metrics of one gateway (its own registry, so apps never collide).

Labels are bounded sets (frame types, error codes): never ids or personal data.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "leadflow_gateway_open_connections",
            "Open WebSocket connections",
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
        self.conversations_started = Counter(
            "leadflow_gateway_conversations_started_total",
            "Conversations started",
            registry=self.registry,
        )
