"""``python -m bench.projector``: the projector's throughput into Redis, and a Kafka replay."""
