"""Regions (issue 20): a conversation is homed in the region that started it (its
id says so), and a gateway of another region sends a resuming visitor home with a
``moved`` frame instead of serving (or refusing) the conversation."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import GatewaySettings
from services.regions import RegionConfigError, Regions, home_of
from tests.unit.test_connection import SECRET, Gateway, send, start_frame

URLS = {"eu": "wss://eu.bot.example/ws", "us": "wss://us.bot.example/ws"}


def region(name: str, urls: dict[str, str] | None = None) -> Gateway:
    settings = GatewaySettings(resume_secret=SECRET, regions=Regions(name, urls or URLS))
    return Gateway(settings)


def test_an_id_names_its_home_and_only_a_region_of_its_own_makes_such_ids() -> None:
    eu = Regions("eu", URLS)
    cid = eu.homed("6f1c2a8e-3d4b-5c6d-9e8f-0a1b2c3d4e5f")
    assert cid == "eu~6f1c2a8e-3d4b-5c6d-9e8f-0a1b2c3d4e5f" and home_of(cid) == "eu"
    assert eu.elsewhere(cid) is None and Regions("us", URLS).elsewhere(cid) == "eu"
    assert Regions().homed("x") == "x" and Regions().elsewhere(cid) is None  # no regions
    assert home_of("6f1c2a8e-3d4b") == "" and home_of("EU~x") == "" and home_of("~x") == ""
    assert eu.elsewhere("6f1c2a8e-3d4b") is None  # made before regions: served anywhere


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEADFLOW_REGION": "Europe!"}, "LEADFLOW_REGION"),
        ({"LEADFLOW_REGION": "eu", "LEADFLOW_REGION_URLS": "us"}, "'us'"),
        ({"LEADFLOW_REGION": "eu", "LEADFLOW_REGION_URLS": "us=http://x/ws"}, "region=wss"),
        ({"LEADFLOW_REGION": "eu", "LEADFLOW_REGION_URLS": "u s=wss://x/ws"}, "u s="),
        ({"LEADFLOW_REGION_URLS": "us=wss://us.example/ws"}, "needs LEADFLOW_REGION"),
    ],
)
def test_bad_region_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(RegionConfigError, match=named):
        Regions.from_env(env)


def test_region_settings_from_the_environment() -> None:
    env = {
        "LEADFLOW_REGION": "eu",
        "LEADFLOW_REGION_URLS": " eu=wss://eu.x/ws , us=ws://[::1]:81/ws",
    }
    assert Regions.from_env(env) == Regions("eu", {"eu": "wss://eu.x/ws", "us": "ws://[::1]:81/ws"})
    assert Regions.from_env({}) == Regions()
    assert GatewaySettings.from_env(SECRET, env).regions.name == "eu"


async def test_a_start_is_homed_here_and_another_regions_gateway_sends_the_visitor_home() -> None:
    eu, us = region("eu"), region("us")
    frames = await send(eu.connect(), start_frame())
    session = frames[0]
    assert session["conversation_id"].startswith("eu~")
    resume = {"type": "resume", "v": 1, "token": session["token"], "last_seq": 0}
    moved = await send(us.connect(), resume)
    assert moved == [{"type": "moved", "v": 1, "region": "eu", "url": URLS["eu"]}]
    assert await us.event_count(session["conversation_id"]) == 0  # the US touched nothing
    home = await send(eu.connect(), resume)
    assert home[0]["type"] == "session" and home[0]["conversation_id"] == session["conversation_id"]


async def test_a_conversation_of_an_unconfigured_region_is_refused_clearly() -> None:
    eu = region("eu", {"eu": URLS["eu"]})
    apac = region("apac", {"apac": "wss://apac.bot.example/ws"})
    session = (await send(apac.connect(), start_frame()))[0]
    resume = {"type": "resume", "v": 1, "token": session["token"], "last_seq": 0}
    [error] = await send(eu.connect(), resume)
    assert error["type"] == "error" and error["code"] == "unknown_region"
    assert "'apac'" in error["message"] and error["retryable"] is False


async def test_without_regions_ids_stay_plain_uuids_of_the_gateway() -> None:
    plain = Gateway(dataclasses.replace(GatewaySettings(resume_secret=SECRET)))
    session = (await send(plain.connect(), start_frame()))[0]
    assert "~" not in session["conversation_id"]
