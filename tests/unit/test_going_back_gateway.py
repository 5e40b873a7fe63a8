"""The gateway's protocol logic for ``back`` (Connection.on_text over a real
ConversationService on fakes): it becomes a GoBack with the frame's seq and node,
its refusals use the seq up, and ``back`` before a conversation is refused."""

from __future__ import annotations

from tests.unit.test_connection import (
    FIRST_PRESS,
    Frame,
    Gateway,
    current,
    gw,  # noqa: F401  (the fixture)
    only_error,
    press_frame,
    send,
    start,
)


def back_frame(seq: int, node: str) -> Frame:
    return {"type": "back", "v": 1, "seq": seq, "node": node}


async def test_back_asks_the_last_question_again(gw: Gateway) -> None:  # noqa: F811
    """Back from the node a press led to asks that question again; back from it asks
    the free-text question before it (solar-quote's first_name) again; back from
    the first question is refused."""
    conn = gw.connect()
    _, frames = await start(conn)  # answers first_name at seq 2
    question = current(frames)
    seq = FIRST_PRESS
    pressed = await send(conn, press_frame(seq, question["node_id"], question["buttons"][0]["id"]))
    on = current(pressed)
    again = await send(conn, back_frame(seq + 1, on["node_id"]))
    (frame,) = again
    message = frame["message"]
    assert (message["node_id"], message["kind"], message["answer"]) == (
        question["node_id"],
        "question",
        None,
    )
    assert frame["ack"] == seq + 1 and message["seq"] > pressed[-1]["message"]["seq"]
    state = await gw.service.state("conv-1")
    assert state.current_node == question["node_id"]
    assert state.answers() == (("first_name", "answered"),)
    (first,) = await send(conn, back_frame(seq + 2, question["node_id"]))
    assert (first["message"]["node_id"], first["message"]["kind"]) == ("first_name", "input")
    assert (await gw.service.state("conv-1")).answers() == ()
    error = only_error(await send(conn, back_frame(seq + 3, "first_name")))
    assert (error["code"], error["seq"], error["ack"]) == ("cannot_go_back", seq + 3, seq + 3)
    assert gw.rejected("cannot_go_back") == 1
    stale = only_error(await send(conn, back_frame(seq + 4, on["node_id"])))
    assert (stale["code"], stale["ack"]) == ("wrong_node", seq + 4)


async def test_back_before_a_conversation_is_no_conversation(gw: Gateway) -> None:  # noqa: F811
    error = only_error(await send(gw.connect(), back_frame(2, "property")))
    assert error["code"] == "no_conversation"


async def test_a_malformed_back_keeps_the_connection(gw: Gateway) -> None:  # noqa: F811
    conn = gw.connect()
    await start(conn)
    error = only_error(await send(conn, {"type": "back", "v": 1, "seq": 2}))
    assert error["code"] == "malformed_frame"
    state = await gw.service.state("conv-1")
    assert state.last_command_seq == FIRST_PRESS - 1  # the start and the first answer
