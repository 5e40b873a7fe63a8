"""The instant opening in the distributed mode (real Kafka, processor, gateways and
projector): each gateway serves the opening from its registry-fed catalog; it is the
processor's first reply byte for byte; a press made before the socket opened is
answered with seq 2; a version published through the projector's admin API moves
both gateways' pointers while the old document reconciles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import opening
from tests.support.distributed import Cluster

pytestmark = pytest.mark.integration


async def test_the_instant_opening_on_two_gateways(cluster: Cluster, tmp_path: Path) -> None:
    env = opening.environment(tmp_path)
    services = [cluster.processor("processor"), cluster.gateway(0), cluster.gateway(1)]
    services.append(cluster.projector())
    for service in services:
        service.env.update(env)
        service.start()
    processor, first, second, projector = services
    processor.wait_log("Worker ready")
    for service in (first, second, projector):
        service.wait_ready()
    urls = [(f"http://127.0.0.1:{g.port}", g.ws_url) for g in (first, second)]

    for http_url, ws_url in urls:
        await opening.the_opening_is_the_first_reply(http_url, ws_url)
    # every gateway names the same bytes by the same name: one entry in a CDN's cache
    first_doc, second_doc = [await opening.fetch_opening(http_url) for http_url, _ in urls]
    assert first_doc.pointer.headers["Location"] == second_doc.pointer.headers["Location"]
    assert first_doc.body == second_doc.body
    await opening.a_press_before_the_socket_is_delivered(*urls[1])

    publish = opening.admin_publisher(f"http://127.0.0.1:{projector.port}/api/v1")
    await opening.a_publish_mid_visit_moves_the_pointer(*urls[0], publish)
    # the other gateway's registry feed moved its pointer too
    fetched = await opening.until_version(urls[1][0], 2)
    assert fetched.doc["messages"][0]["text"] == opening.NEW_GREETING["en"]
