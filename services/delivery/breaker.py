"""A circuit breaker per destination (pure, the clock is passed in).

After ``threshold`` failed attempts in a row the destination's circuit opens:
its due deliveries wait (without an attempt) until it half-opens, after
``open_seconds``, doubling on each failed probe up to ``max_open_seconds``.
While half-open one attempt goes through; success closes the circuit, failure
opens it again. So a dead endpoint costs one probe per interval instead of
every lead's timeout, and never holds up another destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Circuit:
    failures: int = 0
    open_until: float = 0.0
    open_seconds: float = 0.0
    probing: bool = False


@dataclass
class Breakers:
    threshold: int = 5
    open_seconds: float = 30.0
    max_open_seconds: float = 600.0
    circuits: dict[tuple[str, str], Circuit] = field(default_factory=dict)

    def allows(self, key: tuple[str, str], now: float) -> float | None:
        """None if an attempt may start now (it may be the half-open probe);
        else when to look again."""
        circuit = self.circuits.get(key)
        if circuit is None or circuit.failures < self.threshold:
            return None
        if now < circuit.open_until or circuit.probing:
            return max(circuit.open_until, now + 1.0)
        circuit.probing = True
        return None

    def succeeded(self, key: tuple[str, str]) -> None:
        self.circuits.pop(key, None)

    def failed(self, key: tuple[str, str], now: float) -> None:
        """A failed attempt. The ``threshold``-th in a row opens the circuit for
        ``open_seconds``; a failed probe opens it again for twice as long (up to
        ``max_open_seconds``). Attempts that were already in flight when it opened
        count, but do not lengthen the rest."""
        circuit = self.circuits.setdefault(key, Circuit())
        circuit.failures += 1
        if circuit.probing:
            circuit.probing = False
            circuit.open_seconds = min(self.max_open_seconds, circuit.open_seconds * 2)
            circuit.open_until = now + circuit.open_seconds
        elif circuit.failures == self.threshold:
            circuit.open_seconds = self.open_seconds
            circuit.open_until = now + circuit.open_seconds

    def settled(self, key: tuple[str, str]) -> None:
        """An attempt that says nothing of the receiver (the lead was erased, the
        attempt crashed): a probe it was is over, and the next one may go."""
        circuit = self.circuits.get(key)
        if circuit is not None:
            circuit.probing = False

    def is_open(self, key: tuple[str, str], now: float) -> bool:
        circuit = self.circuits.get(key)
        return (
            circuit is not None
            and circuit.failures >= self.threshold
            and (now < circuit.open_until or circuit.probing)
        )
