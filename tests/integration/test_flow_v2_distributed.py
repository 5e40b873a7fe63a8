"""Flow format v2 through a real broker: a gateway, Kafka and a processor play a
flow with a condition on an earlier answer and free-text answers; the personal
answer crosses the commands and events topics only sealed."""

from __future__ import annotations

from pathlib import Path

from tests.support.distributed import Cluster, read_topic
from tests.support.visitor import Visitor
from tests.unit.flows_v2 import ROOFER_YAML

SECRET_NAME = "Quentin Vexbourne"


async def test_condition_and_free_text_through_kafka(cluster: Cluster, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "roofer.yaml").write_text(ROOFER_YAML, "utf-8")
    env = {"LEADFLOW_FLOWS_DIR": str(flows)}
    processor, gateway = cluster.processor(), cluster.gateway(0)
    for service in (processor, gateway):
        service.env.update(env)
        service.start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()

    visitor = await Visitor.connect(gateway.ws_url)
    try:
        await visitor.start("roofer")
        hello, _ = (f["message"] for f in await visitor.answer(SECRET_NAME))
        assert hello["text"].startswith(f"Nice to meet you, {SECRET_NAME}!")
        await visitor.press("flat")
        refused = (await visitor.answer("-3"))[-1]
        assert refused["code"] == "invalid_answer" and refused["retryable"] is True
        small = await visitor.answer("40")  # flat and under 100 m²: the second branch
        assert [f["message"]["node_id"] for f in small] == ["small_flat", "contact"]
    finally:
        await visitor.close()

    for topic in ("commands", "events"):
        partitions = cluster.partitions
        records = await read_topic(cluster.bootstrap, f"{cluster.prefix}{topic}", partitions)
        mine = [v for _, _, v in records if visitor.conversation_id.encode() in v]
        assert mine, topic
        assert all(b"Vexbourne" not in v for v in mine), topic
    log = processor.log_text() + gateway.log_text()
    assert "Vexbourne" not in log
