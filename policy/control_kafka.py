"""The control log on Kafka: guardrail changes in ``{prefix}policy-control``.

One partition (a total order), keyed by flow id, every record kept. The policy
service appends through :class:`ControlPublisher` and follows the topic with a
manually assigned :class:`~services.distributed.kafka_follower.KafkaLogFollower`
(:func:`control_follower`), like every other reader of a log.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.settings import KafkaSettings
from services.distributed.topics import control_topic


def control_follower(settings: KafkaSettings) -> KafkaLogFollower:
    topic = control_topic(settings)
    return KafkaLogFollower(settings, topic, partitions=[0], fetch_max_wait_ms=200)


class ControlPublisher:
    """Appends guardrail changes; ``append_control`` returns once Kafka has one."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._topic = control_topic(settings)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **self._settings.client_kwargs(), acks="all", enable_idempotence=True
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def append_control(self, flow_id: str, at: float, body: bytes) -> int:
        if self._producer is None:
            raise RuntimeError("the control publisher is not started")
        meta = await self._producer.send_and_wait(
            self._topic, key=flow_id.encode(), value=body, partition=0
        )
        return int(meta.offset)
