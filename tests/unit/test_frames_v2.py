"""The answer frame (free-text questions) and the v2 fields of message frames."""

from __future__ import annotations

import orjson
import pytest

from schemas.codec import encode
from schemas.commands import AnswerQuestion
from schemas.frames import AnswerFrame, FrameError, message_frame, parse_client_frame
from schemas.replies import BotMessage, ButtonView, ImageView, InputView
from services.distributed.command_sealing import CommandSealer


def test_answer_frames_parse() -> None:
    frame = parse_client_frame('{"type":"answer","v":1,"seq":4,"node":"size","value":"12"}')
    assert frame == AnswerFrame(seq=4, node="size", value="12")
    skip = parse_client_frame('{"type":"answer","v":1,"seq":5,"node":"size","skip":true}')
    assert skip == AnswerFrame(seq=5, node="size", skip=True)
    assert "12" not in repr(frame)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"seq": 1, "node": "n", "value": "x" * 1001}, "value is over 1000"),
        ({"seq": 1, "node": "n", "value": "x", "skip": True}, "not both"),
        ({"seq": 1, "node": "n", "value": "a\u0000b"}, "control characters"),
        ({"seq": 1, "node": "", "value": "a"}, "node must be"),
        ({"seq": 0, "node": "n", "value": "a"}, "seq must be"),
        ({"seq": 1, "node": "n", "value": 5}, "value"),
        ({"seq": 1, "node": "n", "skip": "yes"}, "skip"),
    ],
)
def test_hostile_answer_frames_are_refused(obj: dict[str, object], message: str) -> None:
    with pytest.raises(FrameError, match=message) as refused:
        parse_client_frame(orjson.dumps({"type": "answer", "v": 1, **obj}))
    assert refused.value.code == "malformed_frame"


def test_message_frames_carry_input_and_image_only_when_set() -> None:
    plain = orjson.loads(message_frame(BotMessage(seq=1, node_id="a", kind="message", text="t"), 1))
    assert "input" not in plain["message"] and "image" not in plain["message"]
    rich = BotMessage(
        seq=2,
        node_id="q",
        kind="input",
        text="**Hi**",
        input=InputView(type="choice", choices=(ButtonView(id="a", label="A"),), other=True),
        image=ImageView(src="https://x.example/i.png", alt="An image"),
    )
    body = orjson.loads(message_frame(rich, 2))["message"]
    assert body["input"]["type"] == "choice" and body["input"]["other"] is True
    assert body["input"]["choices"] == [{"id": "a", "label": "A"}]
    assert body["image"] == {"src": "https://x.example/i.png", "alt": "An image"}


def test_answers_cross_the_commands_topic_sealed() -> None:
    sealer = CommandSealer("s" * 32)
    command = AnswerQuestion(conversation_id="c", seq=3, at=1.0, node_id="n", value="Eve Smith")
    sealed = sealer.seal(command)
    assert b"Eve" not in encode(sealed)
    assert sealer.open(sealed) == command
    skip = AnswerQuestion(conversation_id="c", seq=3, at=1.0, node_id="n", skip=True)
    assert sealer.seal(skip) is skip
