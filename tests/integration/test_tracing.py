"""One trace per command across real processes: gateway -> Kafka -> processor ->
Kafka -> gateway (services/tracing.py), and JSON logs that carry the conversation and
trace ids but never a lead's contact details.

Spans are made only where an exporter is configured: ``cluster`` exports them (the
console exporter, to each process's output); ``quiet`` configures none, so it makes
no ids of its own and only carries a traceparent that comes with the upgrade."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from schemas.batches import decode_batch
from schemas.commands import decode_command
from schemas.replies import decode_reply
from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster, topic_records
from tests.support.patient import PatientVisitor
from tests.support.visitor import VALID_LEAD, Visitor

Record = tuple[bytes, dict[str, bytes]]  # value, headers


def started(
    bootstrap: str, redis_url: str, workdir: Path, env: dict[str, str]
) -> Iterator[Cluster]:
    cluster = new_cluster(bootstrap, redis_url, workdir)
    processor = cluster.processor()
    processor.env.update(env)
    processor.start()
    gateway = cluster.gateway(0)
    gateway.env.update(env)
    gateway.env["LEADFLOW_LOG_LEVEL"] = "debug"  # its "reply received" line, per command
    gateway.start()
    try:
        processor.wait_log("Worker ready")
        gateway.wait_ready()
        yield cluster
    finally:
        cluster.stop()


NO_EXPORTER = {"OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}


@pytest.fixture(scope="module")
def cluster(
    kafka_bootstrap: str, session_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Gateway and processor with an exporter (spans printed to their output)."""
    workdir = tmp_path_factory.mktemp("tracing")
    env = {**NO_EXPORTER, "OTEL_TRACES_EXPORTER": "console"}
    yield from started(kafka_bootstrap, session_redis_url, workdir, env)


@pytest.fixture(scope="module")
def quiet(
    kafka_bootstrap: str, session_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Gateway and processor as shipped: no exporter configured."""
    workdir = tmp_path_factory.mktemp("tracing-quiet")
    yield from started(kafka_bootstrap, session_redis_url, workdir, NO_EXPORTER)


async def records(bootstrap: str, topic: str, partitions: int) -> list[Record]:
    """Every record of ``topic`` with its headers."""
    return [
        (r.value, dict(r.headers))
        for r in await topic_records(bootstrap, topic, partitions)
        if r.value is not None
    ]


def traceparent(headers: dict[str, bytes]) -> tuple[str, str]:
    """(trace id, parent span id) of a valid, sampled W3C traceparent."""
    assert "traceparent" in headers, headers
    version, trace_id, span_id, flags = headers["traceparent"].decode().split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16
    assert int(trace_id, 16) and int(span_id, 16) and int(flags, 16) & 1
    return trace_id, span_id


def json_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return lines


async def test_a_press_is_one_trace_from_gateway_to_processor_and_back(cluster: Cluster) -> None:
    """The press's command record carries the gateway's span; its events and reply
    records carry the same trace with the processor's span as parent; the gateway logs
    the reply under that trace. Regression guard for a hop that drops or restarts the
    trace (a missing header, a processor span without the command's parent)."""
    (gateway,) = [s for s in cluster.services if s.name.startswith("gateway")]
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        await visitor.start("solar-quote")
        node = await visitor.answer_inputs()  # the first name, then a question
        assert node["kind"] == "question"
        frames = await visitor.press(node["buttons"][0]["id"])
        assert frames[-1]["type"] == "message", frames
    finally:
        await visitor.close()
    cid = visitor.conversation_id
    prefix = cluster.prefix
    commands = [
        (decode_command(v), h)
        for v, h in await records(cluster.bootstrap, f"{prefix}commands", cluster.partitions)
    ]
    (press, press_headers) = next(
        (c, h) for c, h in commands if c.conversation_id == cid and c.type == "PressButton"
    )
    trace_id, gateway_span = traceparent(press_headers)

    replies = [
        (decode_reply(v), h)
        for v, h in await records(cluster.bootstrap, f"{prefix}replies", cluster.reply_partitions)
    ]
    (reply_headers,) = [h for r, h in replies if r.request_id == press.request_id]
    reply_trace, processor_span = traceparent(reply_headers)
    assert reply_trace == trace_id and processor_span != gateway_span

    events = [
        h
        for v, h in await records(cluster.bootstrap, f"{prefix}events", cluster.partitions)
        if decode_batch(v).conversation_id == cid
    ]
    of_press = [h for h in events if traceparent(h)[0] == trace_id]
    assert len(of_press) == 1, "the press produced one events record, in its trace"
    assert traceparent(of_press[0]) == (trace_id, processor_span)
    # every command of the conversation has a trace of its own
    traces = {traceparent(h)[0] for c, h in commands if c.conversation_id == cid}
    assert len(traces) == len([c for c, _ in commands if c.conversation_id == cid])

    logged = [
        line
        for line in json_lines(gateway.log_text())
        if line.get("msg") == "reply received" and line.get("trace_id") == trace_id
    ]
    assert logged, "the gateway logged no line in the command's trace"
    assert logged[0]["conversation_id"] == cid
    assert logged[0]["span_id"] == gateway_span
    # and the spans reached the exporter: the processor's, in the press's trace
    processor = next(s for s in cluster.services if s.name == "processor")
    exported = processor.log_text()
    assert '"name": "leadflow.processor.command"' in exported
    assert f'"trace_id": "0x{trace_id}"' in exported


async def test_no_log_line_of_any_service_holds_the_leads_contact_details(
    cluster: Cluster,
) -> None:
    """A lead submitted through the gateway and the processor: neither process's log
    (the gateway's at debug level; the processor's JSON lines) holds the email or name."""
    (gateway,) = [s for s in cluster.services if s.name.startswith("gateway")]
    visitor = PatientVisitor([gateway.ws_url], "saas-demo", random.Random(5))
    try:
        await visitor.play_through_a_lead_form()
    finally:
        await visitor.close()
    processor = next(s for s in cluster.services if s.name == "processor")
    assert any("Worker ready" in str(line["msg"]) for line in json_lines(processor.log_text()))
    for service in cluster.services:
        text = service.log_text()
        assert text, service.name
        for value in (VALID_LEAD["email"], VALID_LEAD["name"]):
            assert value not in text, f"{service.name} logged a lead field"


async def test_a_traceparent_on_the_websocket_upgrade_is_continued(cluster: Cluster) -> None:
    """A page (or a proxy) that sends a traceparent with the upgrade request finds the
    socket's commands in its trace."""
    (gateway,) = [s for s in cluster.services if s.name.startswith("gateway")]
    upstream_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {
        "Origin": "http://localhost",
        "traceparent": f"00-{upstream_trace}-00f067aa0ba902b7-01",
    }
    session = aiohttp.ClientSession()
    visitor = Visitor(ws=await session.ws_connect(gateway.ws_url, headers=headers), session=session)
    try:
        await visitor.start("solar-quote")
    finally:
        await visitor.close()
    commands = [
        (decode_command(v), h)
        for v, h in await records(
            cluster.bootstrap, f"{cluster.prefix}commands", cluster.partitions
        )
    ]
    mine = [h for c, h in commands if c.conversation_id == visitor.conversation_id]
    assert mine and all(traceparent(h)[0] == upstream_trace for h in mine)


async def test_without_an_exporter_no_trace_is_made_up(quiet: Cluster) -> None:
    """No exporter: the command, events and reply records of a press carry no
    traceparent (no ids were generated for spans nobody would see) and the logs no
    trace id; the conversation still works end to end."""
    (gateway,) = [s for s in quiet.services if s.name.startswith("gateway")]
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        await visitor.start("solar-quote")
        node = await visitor.answer_inputs()  # the first name, then a question
        assert node["kind"] == "question"
        frames = await visitor.press(node["buttons"][0]["id"])
        assert frames[-1]["type"] == "message", frames
    finally:
        await visitor.close()
    cid = visitor.conversation_id
    prefix = quiet.prefix
    commands = [
        (decode_command(v), h)
        for v, h in await records(quiet.bootstrap, f"{prefix}commands", quiet.partitions)
    ]
    mine = [(c, h) for c, h in commands if c.conversation_id == cid]
    assert len(mine) == 3 and not any("traceparent" in h for _, h in mine)  # start, name, press
    requests = {c.request_id for c, _ in mine}
    replies = [
        h
        for v, h in await records(quiet.bootstrap, f"{prefix}replies", quiet.reply_partitions)
        if decode_reply(v).request_id in requests
    ]
    events = [
        h
        for v, h in await records(quiet.bootstrap, f"{prefix}events", quiet.partitions)
        if decode_batch(v).conversation_id == cid
    ]
    assert len(replies) == 3 and events
    assert not any("traceparent" in h for h in replies + events)
    received = [
        line
        for line in json_lines(gateway.log_text())
        if line.get("msg") == "reply received" and line.get("conversation_id") == cid
    ]
    assert received and not any("trace_id" in line for line in received)


async def test_without_an_exporter_an_upgrades_traceparent_reaches_every_record(
    quiet: Cluster,
) -> None:
    """No exporter, but a traceparent on the upgrade: the command, its events and its
    reply carry it unchanged (the upstream trace finds every hop's records and logs)."""
    (gateway,) = [s for s in quiet.services if s.name.startswith("gateway")]
    upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"Origin": "http://localhost", "traceparent": upstream}
    session = aiohttp.ClientSession()
    visitor = Visitor(ws=await session.ws_connect(gateway.ws_url, headers=headers), session=session)
    try:
        await visitor.start("solar-quote")
    finally:
        await visitor.close()
    cid = visitor.conversation_id
    prefix = quiet.prefix
    commands = [
        (decode_command(v), h)
        for v, h in await records(quiet.bootstrap, f"{prefix}commands", quiet.partitions)
    ]
    (start, start_headers) = next((c, h) for c, h in commands if c.conversation_id == cid)
    assert start_headers["traceparent"].decode() == upstream
    replies = [
        (decode_reply(v), h)
        for v, h in await records(quiet.bootstrap, f"{prefix}replies", quiet.reply_partitions)
    ]
    (reply_headers,) = [h for r, h in replies if r.request_id == start.request_id]
    assert reply_headers["traceparent"].decode() == upstream
    events = [
        h
        for v, h in await records(quiet.bootstrap, f"{prefix}events", quiet.partitions)
        if decode_batch(v).conversation_id == cid
    ]
    assert len(events) == 1 and events[0]["traceparent"].decode() == upstream
    logged = [
        line
        for line in json_lines(gateway.log_text())
        if line.get("msg") == "reply received" and line.get("conversation_id") == cid
    ]
    assert logged and logged[0]["trace_id"] == upstream.split("-")[1]
