"""The distributed conversation processor: the same decider, over Kafka, in transactions."""
