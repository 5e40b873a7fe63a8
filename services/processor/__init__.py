"""The distributed conversation processor: the same decider, run by faust over Kafka."""
