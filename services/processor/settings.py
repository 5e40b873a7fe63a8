"""The processor's tunables: one :class:`EngineSettings` for the engine and its workers.

The :class:`~services.processor.engine.Engine` reads the fetch size
(``max_batch``), ``poll_seconds``, ``queue_limit`` and ``commit_seconds``;
each :class:`~services.processor.partition_worker.PartitionWorker` reads the
batch size, the retry pause, the drain bound and the checkpoint pace. The
value has a module of its own, below both, because both read it and the
engine's module imports the worker's: no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineSettings:
    max_batch: int = 500  # commands decided and committed together
    queue_limit: int = 5_000  # a partition's queue beyond this pauses its fetching
    retry_seconds: float = 0.5  # after a failed batch (Redis or Kafka away)
    drain_seconds: float = 3.0  # a revoked or stopping partition's batch in hand, at most
    poll_seconds: float = 0.1
    commit_seconds: float = 0.2  # how often the commands positions go to the group
    checkpoint_seconds: float = 2.0  # how often a batch also writes the changed states
