"""The default policy until Bayesian selection lands: uniform over the candidates."""

from __future__ import annotations

import hashlib
import random

from services.policy_port import DecisionPoint, EdgeChoice


def decision_seed(conversation_id: str, command_seq: int, salt: str = "") -> int:
    """A 63-bit seed derived from the conversation and the command: stable across
    processes and Python versions (unlike ``hash()``), so replays decide alike."""
    digest = hashlib.sha256(f"{conversation_id}/{command_seq}/{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class UniformPolicy:
    """Picks each candidate with probability 1/k, using an RNG seeded from
    (conversation id, command seq), and logs propensity 1/k."""

    version = "uniform-v1"

    def choose(self, point: DecisionPoint) -> EdgeChoice:
        seed = decision_seed(point.conversation_id, point.command_seq)
        k = len(point.candidates)
        chosen = point.candidates[random.Random(seed).randrange(k)]
        return EdgeChoice(chosen=chosen, propensity=1.0 / k, policy_version=self.version, seed=seed)
