"""The seeded numbers of one decision: SplitMix64 uniforms and the holdout hash. Pure.

A decision's seed is ``decision_seed(conversation id, command seq, snapshot
version)`` (63 bits of SHA-256, :func:`policy.uniform.decision_seed`). From it
come two uniform numbers ``u1, u2`` in [0, 1): the first two outputs ``z1, z2``
of SplitMix64 started at ``seed`` (:func:`splitmix64`), ``u = (z >> 11) / 2**53``
(:func:`decision_uniforms`). Integer arithmetic only: every process, machine and
Python version derives the same numbers, so ``replay --verify`` reproduces every
logged decision bit for bit. Whether a conversation is in the holdout is a hash
of its id alone (:func:`holdout_share`), so a whole conversation is held out.
"""

from __future__ import annotations

import hashlib

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
TWO_POW_MINUS_53 = 2.0**-53


def splitmix64(state: int, i: int) -> int:
    """The ``i``-th (from 1) 64-bit output of SplitMix64 started at ``state``."""
    z = (state + i * _GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def decision_uniforms(seed: int) -> tuple[float, float]:
    """``u1`` (the exploration coin) and ``u2`` (the candidate or the draw) of a decision."""
    return (
        (splitmix64(seed, 1) >> 11) * TWO_POW_MINUS_53,
        (splitmix64(seed, 2) >> 11) * TWO_POW_MINUS_53,
    )


def holdout_share(conversation_id: str) -> float:
    """A stable uniform number in [0, 1) per conversation."""
    digest = hashlib.sha256(f"holdout/{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
