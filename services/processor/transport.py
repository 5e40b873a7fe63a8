"""faust's aiokafka transport with a short fetch wait, registered as ``leadflow://``.

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer.
aiokafka leaves a partition out of the next fetch while it still has buffered
records, so a record arriving on that partition waits for the in-flight fetch
to time out: under steady load that put ~1.6 s between a command reaching
Kafka and the agent seeing it. With a short wait the fetch returns promptly.
The scheme is registered through faust's ``faust.transports`` entry point.
"""

from __future__ import annotations

import os
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = int(os.environ.get("LEADFLOW_FETCH_MAX_WAIT_MS", "5"))


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer: aiokafka.AIOKafkaConsumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the fetcher starts
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
