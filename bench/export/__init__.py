"""``python -m bench.export``: export throughput to Parquet, SQLite and Kafka."""
