"""Free-text answers: validation and normalisation per input type (pure).

A refused answer gets a message fit for the visitor that never repeats the
value (it may be personal data, and rejections are logged).
"""

from __future__ import annotations

import datetime
import re

from schemas.flow import InputSpec, InputType
from services.conversation.leads import normalise_email, normalise_phone

_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _format_number(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def _number(value: str, spec: InputSpec) -> tuple[str | None, str]:
    if not _NUMBER.fullmatch(value):
        return None, "Please enter a number."
    number = float(value.replace(",", "."))
    if spec.min is not None and number < spec.min:
        return None, f"Please enter a number of at least {_format_number(spec.min)}."
    if spec.max is not None and number > spec.max:
        return None, f"Please enter a number of at most {_format_number(spec.max)}."
    return _format_number(number), ""


def _date(value: str) -> tuple[str | None, str]:
    if _DATE.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value).isoformat(), ""
        except ValueError:
            pass
    return None, "Please enter a date as YYYY-MM-DD."


def _choice(value: str, spec: InputSpec) -> tuple[str | None, str]:
    for choice in spec.choices:
        if value == choice.id or value.casefold() == choice.label.strip().casefold():
            return choice.id, ""
    if spec.other:
        return value, ""
    return None, "Please pick one of the choices."


def validate_answer(spec: InputSpec, raw: str, locale: str) -> tuple[str | None, str]:
    """(normalised value, "") or (None, a message for the visitor)."""
    value = " ".join(raw.split())
    if not value:
        return None, "Please enter an answer."
    if len(value) > spec.max_length:
        return None, f"Please keep your answer under {spec.max_length + 1} characters."
    match spec.type:
        case InputType.NUMBER:
            return _number(value, spec)
        case InputType.EMAIL:
            email = normalise_email(value)
            return (email, "") if email else (None, "Please enter a valid email address.")
        case InputType.PHONE:
            phone = normalise_phone(value, locale)
            if phone is None:
                return None, "Please enter a valid phone number (e.g. +44 7911 123456)."
            return phone, ""
        case InputType.DATE:
            return _date(value)
        case InputType.CHOICE:
            return _choice(value, spec)
        case _:
            return value, ""
