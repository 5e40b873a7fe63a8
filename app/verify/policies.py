"""The policy a logged decision was made with, rebuilt from the snapshot archive.

An ``EdgeChosen`` names its policy: ``uniform-v1``, a snapshot version, or
``<snapshot version>:killed`` (that snapshot with the kill switch on). A replay
serves each decision from a :class:`~policy.thompson.ThompsonPolicy` holding
exactly that snapshot (with the same uniform fallback as the live policy), so
seeds, draws, guardrails and propensities are recomputed, not copied. An
update archived in its compact form (the online learner's Gaussian posterior,
:mod:`policy.archive`) is regenerated to its exact bytes first.
Compiling a snapshot takes about 10 ms, so compiled ones are kept by version
(decisions of conversations that ran at the same time share a few versions).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from policy.archive import expand
from policy.snapshot import SnapshotError, decode_snapshot
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from services.policy_port import EdgePolicy

KILLED_SUFFIX = ":killed"
UNIFORM = UniformPolicy()

# the archived body of a snapshot version, None when it is not archived
LoadSnapshot = Callable[[str], bytes | None]


def snapshot_version(policy_version: str) -> str | None:
    """The archived snapshot a logged policy version needs (None: uniform)."""
    if policy_version == UniformPolicy.version:
        return None
    return policy_version.removesuffix(KILLED_SUFFIX)


class Unavailable(Exception):
    """A snapshot version a decision names that the archive does not have (or
    cannot decode): the decision cannot be replayed."""


class ReplayPolicies:
    """Compiled policies by snapshot version, the ``capacity`` last used kept."""

    def __init__(self, load: LoadSnapshot, capacity: int = 64) -> None:
        self._load = load
        self._capacity = capacity
        self._compiled: OrderedDict[str, EdgePolicy] = OrderedDict()
        self.compiled = 0  # how many snapshots were compiled (a measure of the cache)

    def policy(self, policy_version: str) -> EdgePolicy:
        """The policy that made decisions logged under ``policy_version``; raises
        :class:`Unavailable`."""
        version = snapshot_version(policy_version)
        if version is None:
            return UNIFORM
        cached = self._compiled.get(version)
        if cached is not None:
            self._compiled.move_to_end(version)
            return cached
        body = self._load(version)
        if body is None:
            raise Unavailable(f"policy snapshot {version} is not archived")
        try:
            snapshot = decode_snapshot(expand(body))  # an update may be archived compactly
            if snapshot.version != version:
                raise SnapshotError(f"the archive's record for {version} holds {snapshot.version}")
            policy = ThompsonPolicy(snapshots={snapshot.flow_id: snapshot})
        except SnapshotError as exc:
            raise Unavailable(f"policy snapshot {version} cannot be used: {exc}") from exc
        self.compiled += 1
        self._compiled[version] = policy
        while len(self._compiled) > self._capacity:
            self._compiled.popitem(last=False)
        return policy

    def policies(self, policy_versions: Iterable[str]) -> dict[str, EdgePolicy]:
        """:meth:`policy` for each version (raises :class:`Unavailable`)."""
        return {v: self.policy(v) for v in policy_versions}
