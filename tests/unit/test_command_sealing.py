"""Lead fields on the commands topic are sealed by the gateway, opened by the processor."""

from __future__ import annotations

import pytest

from schemas.codec import encode
from schemas.commands import PressButton, SubmitLead
from services.distributed.command_sealing import (
    SEALED_FIELD,
    CommandSealer,
    CommandSealError,
    command_sealer_from_env,
)

LEAD = SubmitLead(
    conversation_id="c1",
    seq=5,
    at=1.0,
    node_id="contact",
    fields={"email": "ann@example.com", "name": "Ann", "consent": "true"},
)


def test_sealed_lead_carries_no_contact_details_and_opens_back() -> None:
    """What goes to Kafka holds only ciphertext; the processor gets the fields back."""
    sealer = CommandSealer("s" * 32)
    sealed = sealer.seal(LEAD)
    assert b"ann@example.com" not in encode(sealed) and b"Ann" not in encode(sealed)
    assert set(sealed.fields) == {SEALED_FIELD}  # type: ignore[union-attr]
    assert sealer.open(sealed) == LEAD


def test_other_commands_pass_unchanged() -> None:
    """Only lead fields are personal data; presses travel as they are."""
    sealer = CommandSealer("s" * 32)
    press = PressButton(conversation_id="c1", seq=2, at=1.0, node_id="q", button_id="b")
    assert sealer.seal(press) is press and sealer.open(press) is press


def test_another_secret_or_another_command_cannot_open() -> None:
    """A processor with another secret, or the blob moved to another command, fails clearly."""
    sealed = CommandSealer("s" * 32).seal(LEAD)
    with pytest.raises(CommandSealError):
        CommandSealer("t" * 32).open(sealed)
    moved = SubmitLead(conversation_id="c2", seq=5, at=1.0, node_id="contact", fields=sealed.fields)  # type: ignore[union-attr]
    with pytest.raises(CommandSealError):
        CommandSealer("s" * 32).open(moved)


def test_short_secret_is_refused() -> None:
    """A guessable secret would make the sealing decorative."""
    with pytest.raises(ValueError, match="at least 16"):
        CommandSealer("short")


def test_a_rotation_opens_what_the_previous_secret_sealed_and_seals_with_the_new() -> None:
    """Commands sealed before the switch (still on the topic) open after it; the new
    secret seals; once the previous secret is retired its commands no longer open."""
    old, new = "o" * 32, "n" * 32
    sealed_before = CommandSealer(old).seal(LEAD)
    rotated = CommandSealer(new, previous=[old])
    assert rotated.open(sealed_before) == LEAD
    sealed_after = rotated.seal(LEAD)
    assert CommandSealer(new).open(sealed_after) == LEAD
    with pytest.raises(CommandSealError):
        CommandSealer(old).open(sealed_after)
    with pytest.raises(CommandSealError):
        CommandSealer(new).open(sealed_before)


def test_the_environment_names_the_current_and_previous_secrets() -> None:
    old, new = "o" * 32, "n" * 32
    sealed_before = CommandSealer(old).seal(LEAD)
    env = {"LEADFLOW_COMMAND_SECRET": new, "LEADFLOW_COMMAND_SECRET_PREVIOUS": f"x{old[1:]},{old}"}
    assert command_sealer_from_env(env).open(sealed_before) == LEAD
    short = {"LEADFLOW_COMMAND_SECRET": new, "LEADFLOW_COMMAND_SECRET_PREVIOUS": "short"}
    with pytest.raises(ValueError, match="at least 16 characters"):
        command_sealer_from_env(short)
    with pytest.raises(ValueError, match="at least 16 characters"):
        command_sealer_from_env({})
