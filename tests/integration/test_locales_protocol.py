"""Several languages through the real WebSocket protocol, in both modes (issue 19):
the shipped solar-quote flow speaks English and German; a visitor whose start
context has locale ``de-DE`` reads it in German (texts, buttons, the free-text
question and its template's fallback, lead form labels, a refused lead's messages,
the reply to a duplicate command and a resume on a new socket), one with ``en-US``
in English (greeted by the name typed); ``replay --verify`` is unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.distributed import Cluster
from tests.support.server import ServerProcess
from tests.support.visitor import Visitor

FLOW = "solar-quote"
GERMAN_WELCOME = "Hallo! ☀️ Finden wir heraus, wie viel Sie mit Solarmodulen sparen könnten."
ENGLISH_WELCOME = "Hi! ☀️ Let's find out how much you could save with solar panels."


def _messages(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f["message"] for f in frames if f["type"] == "message"]


async def _english(ws_url: str) -> None:
    visitor = await Visitor.connect(ws_url)
    try:
        welcome, name = _messages(await visitor.start(FLOW, locale="en-US"))
        assert welcome["text"].startswith(ENGLISH_WELCOME)
        assert name["text"] == "To start, what's your first name?"
        assert (name["input"]["placeholder"], name["input"]["skippable"]) == ("First name", True)
        (question,) = _messages(await visitor.answer("Sam"))
        assert question["text"] == "Hi Sam! What type of property would the panels go on?"
        assert [b["label"] for b in question["buttons"]][:2] == ["A house", "A flat or apartment"]
    finally:
        await visitor.close()


async def _german(ws_url: str) -> tuple[str, str]:
    """Play solar-quote in German to its lead form; return (conversation id, token)."""
    visitor = await Visitor.connect(ws_url)
    try:
        welcome, name = _messages(await visitor.start(FLOW, locale="de-DE"))
        assert welcome["text"].startswith(GERMAN_WELCOME)
        assert name["text"] == "Zum Start: Wie ist Ihr Vorname?"
        assert name["input"]["placeholder"] == "Vorname"
        (question,) = _messages(await visitor.answer(skip=True))  # the fallback greets
        assert (
            question["text"]
            == "Hallo und willkommen! Auf welche Art von Gebäude sollen die Module?"
        )
        assert [b["label"] for b in question["buttons"]] == [
            "Ein Haus",
            "Eine Wohnung",
            "Ein Geschäftsgebäude",
            "Ich wohne zur Miete",
        ]
        (roof,) = _messages(await visitor.press("flat"))
        assert roof["text"].startswith("Module brauchen ein Dach, das Sie nutzen dürfen.")
        await visitor.press("yes")
        await visitor.press("south")
        note, timeframe = _messages(await visitor.press("low"))
        assert note["text"].startswith("Bei einer kleineren Rechnung")
        assert timeframe["text"] == "Wann sollen die Module installiert werden?"
        seq = visitor.ack + 1
        intro, form = _messages(await visitor.press("months"))
        assert intro["text"].startswith("Gute Nachrichten:")
        assert [f["label"] for f in form["fields"]] == [
            "Ihr Name",
            "E-Mail-Adresse",
            "Telefonnummer (optional)",
            "Ich bin einverstanden, zu meinem Solarangebot kontaktiert zu werden",
        ]

        # the same command again: the reply is rebuilt from state, in German
        await visitor.send({"type": "press", "seq": seq, "node": "timeframe", "button": "months"})
        again = [await visitor.recv(), await visitor.recv()]
        assert [m["text"] for m in (f["message"] for f in again)] == [intro["text"], form["text"]]

        refused = await visitor.lead({"name": "Anna", "email": "not-an-address", "consent": "true"})
        error = refused[-1]
        assert error["type"] == "error" and error["code"] == "invalid_lead", error
        assert error["message"] == "Bitte prüfen Sie die markierten Felder."
        assert error["fields"] == {"email": "Das ist keine gültige E-Mail-Adresse."}
        return visitor.conversation_id, visitor.token
    finally:
        await visitor.close()


async def _resume_in_german(ws_url: str, token: str) -> None:
    visitor = await Visitor.connect(ws_url)
    try:
        resumed = _messages(await visitor.resume(token, 0))
        assert resumed[0]["text"].startswith(GERMAN_WELCOME)
        assert resumed[1]["answer"] == "Übersprungen"  # the skipped first name, in German
        assert resumed[2]["answer"] == "Eine Wohnung"  # the button's German label
        assert resumed[-1]["kind"] == "lead_form"
        assert resumed[-1]["text"] == "Nur ein paar Angaben, dann schicken wir Ihnen Ihr Angebot."
    finally:
        await visitor.close()


async def test_the_visitor_s_locale_picks_the_language_in_serve(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        await _english(server.ws_url)
        _, token = await _german(server.ws_url)
        await _resume_in_german(server.ws_url, token)
    finally:
        server.stop()
    verified = server.cli("replay", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified 2 conversations"), verified.stdout
    assert verified.stdout.rstrip().endswith("): identical"), verified.stdout


async def test_the_visitor_s_locale_picks_the_language_through_kafka(cluster: Cluster) -> None:
    processor, gateway = cluster.processor().start(), cluster.gateway(0).start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    await _english(gateway.ws_url)
    _, token = await _german(gateway.ws_url)
    second = cluster.gateway(1).start()  # another gateway resumes: the processor renders
    second.wait_ready()
    await _resume_in_german(second.ws_url, token)
