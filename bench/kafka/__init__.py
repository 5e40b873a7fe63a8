"""``python -m bench.kafka``: the distributed mode's latency and throughput on one machine.

WebSocket visitors -> gateway -> Kafka ``commands`` -> processor -> ``events`` +
``replies`` -> gateway -> WebSocket, next to a raw aiokafka round trip on the same broker
(the floor) and the processor alone fed straight from Kafka. See ``bench/kafka/README.md``.
"""
