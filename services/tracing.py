"""OpenTelemetry trace context carried through Kafka record headers (W3C Trace Context).

One trace per command: the gateway starts a span and puts ``traceparent`` (and
``tracestate``) into the command record's headers; the processor continues it with a
child span for decide + produce and puts *its* context into the events and reply
records; the gateway closes the command with a span whose parent is the processor's.

``configure_tracing`` installs the SDK's tracer provider (ids are generated, spans are
dropped) unless one is installed already; spans are exported only when the operator
asks for it with the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` and the
``opentelemetry-exporter-otlp`` package): nothing here needs the network.
Span attributes are bounded (command type, partition): never a conversation id's
lead data, never field values.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)
Headers = Sequence[tuple[str, bytes]]
TRACE_HEADERS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


@functools.cache
def tracer() -> trace.Tracer:
    """Leadflow's tracer, made once (``get_tracer`` costs ~14 us per call). Asked before
    ``configure_tracing`` it is OpenTelemetry's proxy, which follows the provider set later."""
    return trace.get_tracer("leadflow")


def configure_tracing(service: str) -> None:
    """Install an SDK tracer provider for ``service`` (once per process), with an OTLP
    exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the exporter is installed."""
    from opentelemetry.sdk.resources import Resource  # the SDK: composition roots only
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set without opentelemetry-exporter-otlp")
    trace.set_tracer_provider(provider)


def inject_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """The W3C headers of ``context`` (default: the current one); [] without a span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return [(k, v.encode("ascii")) for k, v in carrier.items() if k in TRACE_HEADERS]


def extract_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context:
    """The context carried by Kafka headers (an empty one if there is none or it is bad)."""
    if not headers:
        return Context()
    items = headers.items() if isinstance(headers, Mapping) else headers
    carrier: dict[str, str] = {}
    for key, value in items:
        if key in TRACE_HEADERS and value is not None:
            carrier[key] = bytes(value).decode("ascii", "replace")
    return _PROPAGATOR.extract(carrier)


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Within the block, the W3C context of an HTTP request (the WebSocket upgrade's
    ``traceparent``) is the current one: the socket's commands continue that trace.
    Without a ``traceparent`` nothing changes (each command starts its own trace)."""
    if "traceparent" not in headers:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, None without a valid one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
