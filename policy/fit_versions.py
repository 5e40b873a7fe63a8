"""The versions the fit schedule gives its snapshots, and the fit's seed.

Versions read ``{flow}@{flow_version}#{UTC time of the fit}`` for a fit and
``...#{time}.{n}`` for its n-th update (or guardrail change); an online
posterior published instead of a refused fit derives from
``...#{time}.online``. A fit's seed is derived from its version: a fit is
reproducible from its counts and version.
"""

from __future__ import annotations

import hashlib
import time

from policy.snapshot import PolicySnapshot


def fit_version(flow_id: str, flow_version: int, at: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at))
    return f"{flow_id}@{flow_version}#{stamp}.{int(at * 1000) % 1000:03d}Z"


def fit_seed(version: str) -> int:
    """A 32-bit seed from the version: a fit is reproducible from its counts and version."""
    return int.from_bytes(hashlib.sha256(f"fit/{version}".encode()).digest()[:4], "big")


def split_version(version: str) -> tuple[str, int | None]:
    """(root, revision) of a published version: ``"f@1#...Z.3"`` -> ``("f@1#...Z", 3)``,
    ``"f@1#...Z.online.2"`` -> ``("f@1#...Z.online", 2)``; a fit's (or a guardrail
    republication's, ``~g...``) revision is None."""
    root, dot, tail = version.rpartition(".")
    if dot and tail.isdigit() and "~" not in version:
        return root, int(tail)
    return version, None


def is_fit_snapshot(snapshot: PolicySnapshot) -> bool:
    """A fit's snapshot: a version without a revision or guardrail suffix, neither
    the online posterior nor the kill switch's uniform snapshot."""
    return (
        split_version(snapshot.version)[1] is None
        and "~" not in snapshot.version
        and snapshot.diagnostics.get("source") != "online"
        and snapshot.diagnostics.get("kind") != "uniform"
    )
