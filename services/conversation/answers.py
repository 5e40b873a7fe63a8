"""Free-text answers: validation and normalisation per input type (pure).

A refused answer gets a message fit for the visitor that never repeats the
value (it may be personal data, and rejections are logged): the English text of
:mod:`services.conversation.messages`, which a reply translates. A choice
matches by id or by its label in any of the flow's locales.
"""

from __future__ import annotations

import datetime
import re

from schemas.flow import InputSpec, InputType
from services.conversation.leads import normalise_email, normalise_phone
from services.conversation.messages import (
    ANSWER_EMPTY,
    ANSWER_TOO_LONG,
    CHOICE,
    DATE,
    EMAIL,
    NUMBER,
    NUMBER_MAX,
    NUMBER_MIN,
    PHONE,
)

_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _format_number(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def _number(value: str, spec: InputSpec) -> tuple[str | None, str]:
    if not _NUMBER.fullmatch(value):
        return None, NUMBER()
    number = float(value.replace(",", "."))
    if spec.min is not None and number < spec.min:
        return None, NUMBER_MIN(min=_format_number(spec.min))
    if spec.max is not None and number > spec.max:
        return None, NUMBER_MAX(max=_format_number(spec.max))
    return _format_number(number), ""


def _date(value: str) -> tuple[str | None, str]:
    if _DATE.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value).isoformat(), ""
        except ValueError:
            pass
    return None, DATE()


def _choice(value: str, spec: InputSpec) -> tuple[str | None, str]:
    wanted = value.casefold()
    for choice in spec.choices:
        labels = choice.labels or (choice.label,)
        if value == choice.id or any(wanted == label.strip().casefold() for label in labels):
            return choice.id, ""
    if spec.other:
        return value, ""
    return None, CHOICE()


def validate_answer(spec: InputSpec, raw: str, locale: str) -> tuple[str | None, str]:
    """(normalised value, "") or (None, a message for the visitor)."""
    value = " ".join(raw.split())
    if not value:
        return None, ANSWER_EMPTY()
    if len(value) > spec.max_length:
        return None, ANSWER_TOO_LONG(limit=spec.max_length + 1)
    match spec.type:
        case InputType.NUMBER:
            return _number(value, spec)
        case InputType.EMAIL:
            email = normalise_email(value)
            return (email, "") if email else (None, EMAIL())
        case InputType.PHONE:
            phone = normalise_phone(value, locale)
            if phone is None:
                return None, PHONE()
            return phone, ""
        case InputType.DATE:
            return _date(value)
        case InputType.CHOICE:
            return _choice(value, spec)
        case _:
            return value, ""
