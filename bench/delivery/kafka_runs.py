"""Phase ``latency-kafka``: lead captured -> delivered in the distributed mode.

A real broker and Redis (``KAFKA_BOOTSTRAP_SERVERS``/``REDIS_URL`` if set, else
the local broker from the Maven jars and Debian's ``redis-server``, as the
tests start them), one gateway, one processor and one ``leadflow run
delivery``, all subprocesses; visitors leave leads through the gateway at a
steady pace and a receiver in this process times their arrival. The latency
spans the processor's transaction, the delivery worker's consumer (read
committed), its intake into Redis, the claim and the POST.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from bench.delivery.embedded_runs import Pacer, latency_result, until
from bench.delivery.receiver import TimedReceiver
from bench.procstats import Json
from tests.support.delivery_rig import SECRET, webhook, write_config
from tests.support.distributed import Cluster
from tests.support.kafka import kafka_bootstrap_for_session
from tests.support.redis_server import redis_url_for_session


async def run_latency_kafka(leads: int, rate: float, tmp_root: str | None) -> Json:
    receiver = TimedReceiver(SECRET)
    await receiver.start()
    with tempfile.TemporaryDirectory(prefix="bench-delivery-kafka-", dir=tmp_root) as tmp:
        root = Path(tmp)
        bootstrap, stop_kafka = kafka_bootstrap_for_session(root / "kafka")
        redis_url, stop_redis = redis_url_for_session(root / "redis")
        cluster = Cluster(
            bootstrap, redis_url, root / "cluster", prefix=f"b{uuid.uuid4().hex[:6]}."
        )
        try:
            env = write_config(root, {"acme": [webhook("crm", f"{receiver.url}/hook")]})
            processor, gateway = cluster.processor(), cluster.gateway(0)
            delivery = cluster.delivery("delivery", env)
            for service in (processor, gateway):
                service.env.update(env)
            for service in (processor, gateway, delivery):
                service.start()
            processor.wait_log("Worker ready", timeout=120)
            gateway.wait_ready(120)
            delivery.wait_ready(120)
            pacer = Pacer(gateway.ws_url, {"acme": rate})
            started = time.perf_counter()
            pacer.start()
            await until(lambda: len(pacer.sent["acme"]) >= leads, leads / rate + 60)
            await pacer.stop()
            sent = len(pacer.sent["acme"]) - len(pacer.errors)
            complete = await until(lambda: len(receiver.arrived) >= sent, 60)
            wall = time.perf_counter() - started
        finally:
            cluster.stop()
            stop_redis()
            stop_kafka()
            await receiver.stop()
    return {
        **latency_result(pacer, receiver, rate, complete),
        "wall_s": round(wall, 1),
        "services": ["gateway", "processor", "delivery"],
    }
