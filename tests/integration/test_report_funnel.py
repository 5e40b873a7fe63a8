"""``leadflow report funnel`` as a real subprocess on real logs: an embedded
SQLite log of more than 100,000 events written with the read models projected
in the same transactions (as ``leadflow serve`` does), and a real Kafka topic.

The report's numbers are checked against the read model the projector wrote
for the same log (SQLite) and the oracle's (Kafka)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from projector.sqlite_projection import project_in_transaction
from projector.sqlite_schema import SCHEMA
from projector.sqlite_store import SqliteReadModel
from projector.write_set import funnel_key
from schemas.batches import BATCH_TYPE, BATCH_VERSION
from schemas.events import ConversationStarted, Event
from services.embedded.sqlite_eventlog import SqliteEventLog
from tests.support.distributed import Cluster
from tests.support.export_logs import insert_raw_row
from tests.support.projection import produce
from tests.support.readmodel_oracle import Oracle
from tests.support.server import ROOT
from tests.support.traffic import simulate

CONVERSATIONS = 7_500  # about 103,000 events
WROTE = re.compile(r"wrote (.+): ([\d,]+) conversations, ([\d,]+) leads \([\d.]+ s\)")


Run = subprocess.CompletedProcess[str]


def leadflow(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def report(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    return leadflow("report", "funnel", *args, env=env, cwd=cwd)


@dataclass(frozen=True)
class Log:
    data_dir: Path
    events: list[Event]


async def _write(path: Path, events: Sequence[Event]) -> None:
    log = SqliteEventLog(path, projection=project_in_transaction, projection_schema=SCHEMA)
    log.start()
    try:
        for i in range(0, len(events), 5_000):
            await log.append(events[i : i + 5_000])
    finally:
        log.close()


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    """One log shared by the module: the read models projected as it was appended."""
    data_dir = tmp_path_factory.mktemp("report-log")
    events = asyncio.run(simulate(CONVERSATIONS, seed=61)).events
    asyncio.run(_write(data_dir / "events.db", events))
    return Log(data_dir, events)


def counts(stdout: str) -> tuple[Path, int, int]:
    match = WROTE.search(stdout)
    assert match is not None, stdout
    return Path(match[1]), int(match[2].replace(",", "")), int(match[3].replace(",", ""))


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


def tables(page: Path) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tables


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def funnel_from_page(page: Path) -> dict[str, int]:
    """The node table (entered, left) and the edge table (conversations, leads)
    as read-model counters."""
    nodes, edges = tables(page)[:2]
    out: dict[str, int] = {}
    for node, _kind, _text, entered, left, *_ in nodes[1:]:
        out[f"entered:{node}"], out[f"left:{node}"] = number(entered), number(left)
    for source, target, _via, n, k, _ in edges[1:]:
        out[f"edge:{source}>{target}"] = number(n)
        out[f"edge_converted:{source}>{target}"] = number(k)
    return {name: n for name, n in out.items() if n}


def expected(counters: dict[str, int]) -> dict[str, int]:
    return {
        k: v
        for k, v in counters.items()
        if k.split(":")[0] in ("entered", "left", "edge", "edge_converted")
    }


async def read_model_counters(data_dir: Path, flow: str, site: str | None = None) -> dict[str, int]:
    store = SqliteReadModel(data_dir / "events.db")
    store.start()
    try:
        return await store.counters(funnel_key(flow, 1, site))
    finally:
        store.close()


@pytest.mark.parametrize("flow", ["solar-quote", "insurance-quote"])
def test_the_report_agrees_with_the_read_model_on_a_100k_event_log(
    big_log: Log, tmp_path: Path, flow: str
) -> None:
    assert len(big_log.events) >= 100_000
    out = tmp_path / "report.html"
    run = report("--flow", flow, "--data-dir", str(big_log.data_dir), "--out", str(out))
    assert run.returncode == 0, run.stderr
    path, conversations, leads = counts(run.stdout)
    counters = asyncio.run(read_model_counters(big_log.data_dir, flow))
    assert path == out
    assert (conversations, leads) == (counters["started"], counters["leads"])
    assert funnel_from_page(out) == expected(counters)


def test_a_sites_report_agrees_with_that_sites_own_funnel(big_log: Log, tmp_path: Path) -> None:
    """Two sites run saas-demo: the report of one site's conversations equals the
    funnel the read API shows that site's key (the read model's per-site funnel)."""
    for site in ("acme", "globex"):
        out = tmp_path / f"{site}.html"
        run = report(
            "--flow", "saas-demo", "--site", site, "--data-dir", str(big_log.data_dir),
            "--out", str(out),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        counters = asyncio.run(read_model_counters(big_log.data_dir, "saas-demo", site))
        everyone = asyncio.run(read_model_counters(big_log.data_dir, "saas-demo"))
        assert 0 < counters["started"] < everyone["started"]
        assert counts(run.stdout)[1:] == (counters["started"], counters["leads"])
        assert funnel_from_page(out) == expected(counters)


def test_the_default_output_file_is_named_after_the_flow(big_log: Log, tmp_path: Path) -> None:
    run = report(
        "--flow",
        "saas-demo",
        "--data-dir",
        str(big_log.data_dir),
        "--site",
        "acme",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    path, conversations, _ = counts(run.stdout)
    assert path == Path("funnel-saas-demo.html")
    assert (tmp_path / path).stat().st_size > 10_000
    started = [
        e for e in big_log.events
        if isinstance(e, ConversationStarted) and e.flow_id == "saas-demo" and e.site_id == "acme"
    ]  # fmt: skip
    assert conversations == len(started)


def test_an_empty_range_writes_a_report_that_says_so(big_log: Log, tmp_path: Path) -> None:
    after = max(e.at for e in big_log.events) + 1.0
    out = tmp_path / "empty.html"
    run = report("--flow", "solar-quote", "--data-dir", str(big_log.data_dir),
        "--from", str(after), "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert counts(run.stdout)[1:] == (0, 0)
    assert "No conversations in this range." in out.read_text(encoding="utf-8")


def test_a_record_of_an_unknown_schema_version_is_a_clear_error(tmp_path: Path) -> None:
    events = asyncio.run(simulate(30, seed=62)).events
    asyncio.run(_write(tmp_path / "events.db", events))
    newer = orjson.loads(orjson.dumps(events[-1])) | {"v": 99}
    position = insert_raw_row(
        tmp_path, events[-1].conversation_id, 999, newer["type"], orjson.dumps(newer)
    )
    out = tmp_path / "report.html"
    run = report("--flow", "solar-quote", "--data-dir", str(tmp_path), "--out", str(out))
    assert run.returncode == 2
    assert f"position {position}" in run.stderr and "version" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


def test_a_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    run = report("--flow", "solar-quote", "--data-dir", str(tmp_path / "none"))
    assert run.returncode == 2
    assert "no event log" in run.stderr and "Traceback" not in run.stderr


def test_the_report_reads_a_kafka_topic(cluster: Cluster, tmp_path: Path) -> None:
    events = asyncio.run(simulate(900, seed=63)).events
    asyncio.run(produce(cluster, events))
    oracle = asyncio.run(Oracle().fold(events))
    want = asyncio.run(oracle.store.counters(funnel_key("insurance-quote", 1)))
    out = tmp_path / "kafka.html"
    run = report(
        "--kafka",
        "--flow",
        "insurance-quote",
        "--out",
        str(out),
        env=cluster.env,
    )
    assert run.returncode == 0, run.stderr
    assert counts(run.stdout)[1:] == (want["started"], want["leads"])
    assert funnel_from_page(out) == expected(want)


async def _produce_raw(cluster: Cluster, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(f"{cluster.prefix}events", key=key, value=value)
    finally:
        await producer.stop()


def test_an_unknown_version_on_kafka_is_a_clear_error(cluster: Cluster, tmp_path: Path) -> None:
    events = asyncio.run(simulate(20, seed=64)).events
    asyncio.run(produce(cluster, events))
    newer = orjson.loads(orjson.dumps(events[0])) | {"v": 99, "conversation_id": "future"}
    batch = {"type": BATCH_TYPE, "v": BATCH_VERSION, "conversation_id": "future"}
    batch |= {"command_seq": 1, "events": [newer]}
    asyncio.run(_produce_raw(cluster, b"future", orjson.dumps(batch)))
    run = report(
        "--kafka",
        "--flow",
        "solar-quote",
        "--out",
        str(tmp_path / "r.html"),
        env=cluster.env,
    )
    assert run.returncode == 2
    assert "offset" in run.stderr and "version" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_a_mistyped_flow_on_kafka_is_an_error_naming_the_flows(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Not in the flow files, no conversation in the topic: exit 2, one line, no file."""
    asyncio.run(produce(cluster, asyncio.run(simulate(20, seed=64)).events))
    out = tmp_path / "typo.html"
    run = report("--kafka", "--flow", "insurance-qoute", "--out", str(out), env=cluster.env)
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.splitlines()
    assert "'insurance-qoute'" in line and "insurance-quote" in line and "--flow" in line
    assert "Traceback" not in run.stderr
    assert not out.exists()
