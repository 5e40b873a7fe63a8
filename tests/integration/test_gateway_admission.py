"""The connection cap's arithmetic (gateway/admission.py): its default from the
open-files limit, slots taken before the upgrade, readiness with hysteresis, the
jittered Retry-After; and its setting (gateway/config.py)."""

from __future__ import annotations

import pytest

from gateway.admission import Admission, default_max_connections, low_water
from gateway.config import GatewaySettings

SECRET = b"s" * 32


def test_the_default_cap_leaves_headroom_below_the_open_files_limit() -> None:
    assert default_max_connections(1024) == 1024 - 128 - 102
    assert default_max_connections(1 << 20) == (1 << 20) - 128 - 104857
    assert default_max_connections(100) == 1  # never zero: a tiny limit still serves one
    for files in (256, 1024, 65536, 1 << 20):
        assert default_max_connections(files) <= files - 128 - files // 10


def test_admits_up_to_the_cap_and_refuses_above_it() -> None:
    admission = Admission(cap=3)
    assert [admission.admit() for _ in range(4)] == [True, True, True, False]
    assert admission.open == 3 and admission.saturated
    admission.release()
    assert admission.admit(), "a freed slot is taken again"
    assert not admission.admit()


def test_readiness_returns_only_at_the_low_water_mark() -> None:
    """Unready at the cap; ready again at 95% of it, not at the first socket closed."""
    admission = Admission(cap=40)
    assert low_water(40) == 38
    states = []
    for _ in range(40):
        assert admission.admit()
    states.append(admission.saturated)
    admission.release()  # 39 open: still unready, yet a new socket is admitted
    states.append(admission.saturated)
    assert admission.admit()
    admission.release()
    admission.release()  # 38
    states.append(admission.saturated)
    assert states == [True, True, False]
    assert low_water(20) == 19 and low_water(1) == 0


def test_the_metrics_mirror_follows_every_change() -> None:
    seen: list[tuple[int, bool]] = []
    admission = Admission(cap=1, on_change=lambda n, s: seen.append((n, s)))
    admission.admit()
    admission.admit()
    admission.release()
    assert seen == [(1, True), (1, True), (0, False)]


def test_an_unset_cap_is_derived_when_it_is_resolved() -> None:
    admission = Admission()
    assert admission.resolve(open_files=1024) == 794
    assert Admission(cap=20).resolve(open_files=1024) == 20


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 2), (0.5, 3), (0.999, 4)])
def test_retry_after_is_jittered_up_to_as_much_again(rand: float, expected: int) -> None:
    assert Admission(cap=1, retry_after_seconds=2, rand=lambda: rand).retry_after() == expected


def test_the_cap_setting() -> None:
    def cap(value: str) -> int | None:
        env = {"LEADFLOW_MAX_CONNECTIONS": value}
        return GatewaySettings.from_env(SECRET, env).max_connections

    assert cap("") is None and cap("auto") is None
    assert cap("20") == 20
    for bad in ("0", "-3", "many"):
        with pytest.raises(ValueError, match="LEADFLOW_MAX_CONNECTIONS"):
            cap(bad)
    assert GatewaySettings.from_env(SECRET, {}).busy_retry_seconds == 2
