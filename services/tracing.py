"""OpenTelemetry trace context carried through Kafka record headers (W3C Trace Context).

One trace per command: the gateway starts a span and puts ``traceparent`` (and
``tracestate``) into the command record's headers; the processor continues it with a
child span for decide + produce and puts *its* context into the events and reply
records; the gateway closes the command with a span whose parent is the processor's.

``configure_tracing`` installs the SDK's tracer provider only when an exporter is
configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` with the ``opentelemetry-exporter-otlp``
package, or ``OTEL_TRACES_EXPORTER=console``). Without one nothing is installed: the
API's no-op tracer makes no ids and no spans (the SDK provider cost 5-8% of the
processor's and 12-19% of the gateway's CPU samples to make spans nobody saw), yet it
still carries an incoming context: a ``traceparent`` on the WebSocket upgrade reaches
the command, events and reply records unchanged (same trace id and parent span), so
an upstream trace (a proxy's, a page's) still finds the logs of every hop. Nothing
here needs the network.
Span attributes are bounded (command type, partition): never a conversation id's
lead data, never field values.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry import trace
    from opentelemetry.context import Context

log = logging.getLogger(__name__)
Headers = Sequence[tuple[str, bytes]]
TRACE_HEADERS = ("traceparent", "tracestate")


@functools.cache
def _otel() -> Any:
    """OpenTelemetry's API, imported on first use (about 20 ms: a module that imports
    this one, e.g. for its log formatter, does not pay it until a span or an id is
    needed), and the W3C propagator, made once."""
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return SimpleNamespace(trace=trace, context=context, propagator=TraceContextTextMapPropagator())


@functools.cache
def tracer() -> trace.Tracer:
    """Leadflow's tracer, made once (``get_tracer`` costs ~14 us per call). Asked before
    ``configure_tracing`` it is OpenTelemetry's proxy, which follows the provider set later."""
    return _otel().trace.get_tracer("leadflow")  # type: ignore[no-any-return]


def exporter_configured(env: Mapping[str, str]) -> str | None:
    """Which exporter the standard variables ask for: ``otlp``, ``console`` or None.
    ``OTEL_SDK_DISABLED=true`` and ``OTEL_TRACES_EXPORTER=none`` ask for none; an OTLP
    endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``) for OTLP."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if chosen in ("none", "console"):
        return None if chosen == "none" else "console"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def sdk_installed() -> bool:
    """Whether spans are being made (an SDK tracer provider is installed)."""
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(_otel().trace.get_tracer_provider(), TracerProvider)


def tracing_active() -> bool:
    """Whether a span made now would matter: a tracer provider is installed (spans are
    exported) or a trace came in (its context is current). When not, a caller may skip
    its span work altogether (the no-op calls still cost about 6 us a command)."""
    trace = _otel().trace
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    return bool(trace.get_current_span().get_span_context().is_valid)


def configure_tracing(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Install an SDK tracer provider for ``service`` (once per process) when an exporter
    is configured (:func:`exporter_configured`); True when one is installed. Without an
    exporter nothing is installed and spans cost (almost) nothing: see the module doc."""
    from opentelemetry.sdk.resources import Resource  # the SDK: composition roots only
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    if sdk_installed():
        return True
    exporter = exporter_configured(os.environ if env is None else env)
    processor: SpanProcessor
    if exporter == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter(service_name=service))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set without opentelemetry-exporter-otlp:"
                " no spans are made"
            )
            return False
        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    _otel().trace.set_tracer_provider(provider)
    log.info("tracing: spans exported", extra={"exporter": exporter})
    return True


def inject_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """The W3C headers of ``context`` (default: the current one); [] without a span."""
    carrier: dict[str, str] = {}
    _otel().propagator.inject(carrier, context=context)
    return [(k, v.encode("ascii")) for k, v in carrier.items() if k in TRACE_HEADERS]


def extract_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context:
    """The context carried by Kafka headers (an empty one if there is none or it is bad)."""
    if not headers:
        return _otel().context.Context()  # type: ignore[no-any-return]
    items = headers.items() if isinstance(headers, Mapping) else headers
    carrier: dict[str, str] = {}
    for key, value in items:
        if key in TRACE_HEADERS and value is not None:
            carrier[key] = bytes(value).decode("ascii", "replace")
    return _otel().propagator.extract(carrier)  # type: ignore[no-any-return]


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Within the block, the W3C context of an HTTP request (the WebSocket upgrade's
    ``traceparent``) is the current one: the socket's commands continue that trace.
    Without a ``traceparent`` nothing changes (each command starts its own trace)."""
    if "traceparent" not in headers:
        yield
        return
    otel = _otel()
    token = otel.context.attach(otel.propagator.extract(headers))
    try:
        yield
    finally:
        otel.context.detach(token)


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, None without a valid one."""
    ctx = _otel().trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
