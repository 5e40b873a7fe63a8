"""Trace context through Kafka headers (services/tracing.py) and the processor's handler,
with an in-memory span exporter: no Kafka."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.codec import encode
from schemas.commands import StartConversation
from services.log_follower import LogRecord
from services.logs import JsonFormatter, conversation
from services.tracing import (
    Headers,
    configure_tracing,
    continued,
    exporter_configured,
    extract_headers,
    inject_headers,
    sdk_installed,
    tracer,
)
from tests.unit.flows import decider_for

CID = "7d1c2a52-8a8e-4d43-9a51-0d6f4e0e6c11"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK, as configure_tracing installs it when an exporter is configured (here
    an in-memory one; the console exporter would print to the test's output)."""
    if not sdk_installed():
        trace.set_tracer_provider(TracerProvider())
    assert configure_tracing("leadflow-test", {}), "an installed SDK provider is kept"
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def traceparent(headers: Headers) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C traceparent header."""
    value = dict(headers)["traceparent"].decode()
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16
    assert int(flags, 16) & 1, "sampled"
    return trace_id, span_id


def test_inject_then_extract_gives_back_the_span_context(spans: InMemorySpanExporter) -> None:
    with tracer().start_as_current_span("a") as span:
        headers = inject_headers()
    ctx = trace.get_current_span(extract_headers(headers)).get_span_context()
    assert ctx.trace_id == span.get_span_context().trace_id
    assert ctx.span_id == span.get_span_context().span_id
    assert ctx.is_remote


def test_no_span_no_headers_and_bad_headers_are_ignored() -> None:
    assert inject_headers() == []
    for bad in (None, [], [("traceparent", b"not-a-trace")], {"other": b"x"}):
        ctx = trace.get_current_span(extract_headers(bad)).get_span_context()
        assert not ctx.is_valid


async def test_the_processor_continues_the_commands_trace_into_events_and_reply(
    spans: InMemorySpanExporter,
) -> None:
    """The events and reply records carry the command's trace id with the processor's
    span as parent; that span is a child of the gateway's (regression: a processor that
    started a new trace, or copied the gateway's span id, would break the trace)."""
    spans.clear()
    command = StartConversation(
        conversation_id=CID, seq=1, at=1.0, flow_id="quiz", site_id="s", reply_to="0"
    )
    with tracer().start_as_current_span("gateway") as gateway:
        command_headers = inject_headers()
    record = LogRecord(0, 0, encode(command), CID.encode(), headers=tuple(command_headers))
    output = await decider_for().decide(0, [record], {})
    gateway_trace, gateway_span = traceparent(command_headers)
    events = [r for r in output.records if r.kind == "events"]
    assert events and output.replies
    event_trace, event_parent = traceparent(list(events[0].headers))
    reply_trace, reply_parent = traceparent(list(output.replies[0].headers))
    assert event_trace == reply_trace == gateway_trace
    assert event_parent == reply_parent != gateway_span
    (processor,) = [s for s in spans.get_finished_spans() if s.name.startswith("leadflow.")]
    assert processor.parent is not None
    assert processor.parent.span_id == gateway.get_span_context().span_id
    assert format(processor.context.span_id, "016x") == event_parent
    assert dict(processor.attributes or {}) == {
        "leadflow.command": "StartConversation",
        "leadflow.partition": 0,
    }


async def test_a_command_without_trace_context_starts_its_own_trace(
    spans: InMemorySpanExporter,
) -> None:
    command = StartConversation(
        conversation_id=CID, seq=1, at=1.0, flow_id="quiz", site_id="s", reply_to="0"
    )
    output = await decider_for().decide(0, [LogRecord(0, 0, encode(command))], {})
    traceparent(list(output.replies[0].headers))


def test_json_logs_carry_the_conversation_and_trace_ids(spans: InMemorySpanExporter) -> None:
    record = logging.makeLogRecord({"msg": "decided", "levelno": 20, "levelname": "INFO"})
    token = conversation.set(CID)
    try:
        with tracer().start_as_current_span("x") as span:
            body = orjson.loads(JsonFormatter().format(record))
    finally:
        conversation.reset(token)
    assert body["conversation_id"] == CID
    assert body["trace_id"] == format(span.get_span_context().trace_id, "032x")
    outside = orjson.loads(JsonFormatter().format(record))
    assert "conversation_id" not in outside and "trace_id" not in outside


def test_an_upgrade_requests_traceparent_is_continued(spans: InMemorySpanExporter) -> None:
    """A traceparent on the WebSocket upgrade makes the socket's command spans its
    children; without one, a command span starts a trace of its own."""
    upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    incoming = {"traceparent": upstream, "other": "x"}
    with continued(incoming), tracer().start_as_current_span("command") as span:
        ctx = span.get_span_context()
    assert format(ctx.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    with continued({}), tracer().start_as_current_span("command") as alone:
        assert format(alone.get_span_context().trace_id, "032x") != upstream.split("-")[1]


@pytest.mark.parametrize(
    ("env", "exporter"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, None),
    ],
)
def test_spans_are_made_only_when_an_exporter_is_configured(
    env: dict[str, str], exporter: str | None
) -> None:
    assert exporter_configured(env) == exporter


def test_without_an_sdk_an_incoming_traceparent_is_carried_unchanged() -> None:
    """What a gateway and a processor without an exporter do (the API's no-op tracer):
    no span of their own, no ids made up, but the upgrade's traceparent reaches the
    headers they write; without one they write none."""
    noop = trace.NoOpTracer()
    upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with continued({"traceparent": upstream}), noop.start_as_current_span("gateway"):
        command_headers = inject_headers()
    assert dict(command_headers)["traceparent"].decode() == upstream
    with noop.start_as_current_span("processor", context=extract_headers(command_headers)):
        reply_headers = inject_headers()
    assert dict(reply_headers)["traceparent"].decode() == upstream
    with continued({}), noop.start_as_current_span("gateway"):
        assert inject_headers() == []
