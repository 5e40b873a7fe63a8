"""``leadflow export`` beside a running ``leadflow serve`` (WAL, read-only open)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from tests.support.export_logs import leadflow
from tests.support.server import ServerProcess
from tests.support.visitor import Visitor

EMAIL = "export.live@example.com"


async def _conversation_with_lead(server: ServerProcess) -> str:
    rng = random.Random(3)
    for _ in range(30):  # a socket of its own per conversation: a socket starts only a few
        visitor = await Visitor.connect(server.ws_url)
        try:
            await visitor.start("insurance-quote", utm_source="newsletter")
            while visitor.current()["kind"] == "question":  # type: ignore[index]
                await visitor.press(rng.choice(visitor.current()["buttons"])["id"])  # type: ignore[index]
            if visitor.current()["kind"] == "lead_form":  # type: ignore[index]
                await visitor.lead({"name": "Liv", "email": EMAIL, "consent": "true"})
                await visitor.play_to_end(rng)
                return visitor.conversation_id
        finally:
            await visitor.close()
    raise AssertionError("no path to a lead form found")


async def test_export_while_serving_reads_the_live_log_and_opens_its_leads(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    """The export opens events.db and keys.db read-only while the server holds
    them (WAL): it sees every committed event, and the server keeps serving."""
    fresh_server.start()
    cid = await _conversation_with_lead(fresh_server)
    out = tmp_path / "live.parquet"
    result = leadflow(
        "export", "--data-dir", str(fresh_server.data_dir), "--out", str(out), "--include-pii"
    )
    assert result.returncode == 0, result.stderr
    assert EMAIL not in result.stdout + result.stderr
    rows = [r for r in pq.read_table(out).to_pylist() if r["conversation_id"] == cid]
    types = [r["type"] for r in rows]
    assert types[0] == "ConversationStarted" and "LeadCaptured" in types
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["flow_id"] for r in rows} == {"insurance-quote"}
    assert rows[0]["utm_source"] == "newsletter"
    lead = next(r for r in rows if r["type"] == "LeadCaptured")
    assert orjson.loads(lead["lead"])["email"] == EMAIL
    second = await _conversation_with_lead(fresh_server)  # still serving and appending
    assert second != cid
