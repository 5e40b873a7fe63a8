"""The connection cap's arithmetic (gateway/admission.py): its default from the
open-files limit, slots taken before the upgrade, readiness with hysteresis, the
jittered Retry-After; and its setting (gateway/config.py). Shedding while the event
loop is late (gateway/loop_lag.py), over a real socket."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.admission import (
    Admission,
    default_max_connections,
    install_admission,
    low_water,
    refuse_at_capacity,
)
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics

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


def test_an_overloaded_loop_sheds_and_a_quiet_one_does_not() -> None:
    admission = Admission(cap=10, shed_lag_seconds=0.5)
    admission.lag.record(100.0, 0.6)
    assert admission.overloaded(100.5)
    assert not admission.overloaded(101.2)
    admission.lag.record(102.0, 0.4)
    assert not admission.overloaded(102.1)  # late, but not past the threshold
    never = Admission(cap=10, shed_lag_seconds=None)
    never.lag.record(100.0, 30.0)
    assert not never.overloaded(100.1)


async def test_upgrades_get_503_while_the_loop_is_late_and_are_admitted_again_after() -> None:
    """Over a real socket: the lag ticker runs with the app; a stalled loop refuses
    the next upgrade (``overloaded``, Retry-After, counted), a second later it admits."""
    settings = replace(GatewaySettings(resume_secret=SECRET), shed_lag_seconds=0.2)
    metrics = GatewayMetrics()
    app = web.Application()
    admission = install_admission(app, settings, metrics)
    admission.lag.window = 3.0  # room for a slow handshake on a loaded machine

    async def handler(request: web.Request) -> web.StreamResponse:
        refused = refuse_at_capacity(admission, metrics)
        if refused is not None:
            return refused
        try:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.close()
            return ws
        finally:
            admission.release()

    app.router.add_get("/ws", handler)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url("/ws"))
        async with session.ws_connect(url):
            pass
        time.sleep(0.5)  # noqa: ASYNC251 (the point: the loop stalls, the ticker wakes late)
        await asyncio.sleep(0.15)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 503
        assert refused.value.headers is not None and "Retry-After" in refused.value.headers
        refusals = metrics.registry.get_sample_value(
            "leadflow_gateway_upgrades_refused_total", {"reason": "overloaded"}
        )
        assert refusals == 1
        lag = metrics.registry.get_sample_value("leadflow_gateway_loop_lag_seconds")
        assert lag is not None and lag > 0.2
        await asyncio.sleep(admission.lag.window)  # the late tick leaves the window
        for _ in range(20):  # as a widget does: retry (a loaded machine may be late again)
            try:
                async with session.ws_connect(url) as ws:
                    assert not ws.closed
                    break
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status != 503:
                    raise
                await asyncio.sleep(0.25)
        else:
            raise AssertionError("never admitted again")
