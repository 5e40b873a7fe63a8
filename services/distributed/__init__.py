"""Adapters of the distributed mode: Kafka and Redis."""
