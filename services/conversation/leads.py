"""Lead field validation and normalisation (pure).

Emails are checked for a sane syntax, phone numbers are normalised to E.164
with the visitor's locale as the default region, consent must be given when
required. Error messages name the field and never echo the value back; they
are English (what the decider logs), translated by the reply
(:mod:`services.conversation.messages`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import phonenumbers

from schemas.flow import FieldType, LeadField
from services.conversation.messages import (
    CONSENT_REQUIRED,
    CONTACT_NEEDED,
    FIELD_BOOLEAN,
    FIELD_EMAIL,
    FIELD_PHONE,
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    NOT_A_FIELD,
)

EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
TRUE_VALUES = frozenset({"true", "yes", "on", "1"})
FALSE_VALUES = frozenset({"", "false", "no", "off", "0"})
MAX_VALUE_CHARS = 200


def region_of(locale: str) -> str | None:
    """``en-GB`` -> ``GB``; None when the locale names no region."""
    parts = re.split(r"[-_]", locale)
    if len(parts) >= 2 and len(parts[-1]) == 2 and parts[-1].isalpha():
        return parts[-1].upper()
    return None


def normalise_email(value: str) -> str | None:
    value = value.strip()
    if len(value) > 254 or not EMAIL_RE.match(value) or ".." in value:
        return None
    local, _, domain = value.rpartition("@")
    if len(local) > 64 or local.startswith(".") or local.endswith("."):
        return None
    return f"{local}@{domain.lower()}"


def normalise_phone(value: str, locale: str) -> str | None:
    """E.164 (``+447911123456``) or None if it is not a valid number."""
    value = value.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    try:
        number = phonenumbers.parse(value, None if value.startswith("+") else region_of(locale))
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted


def _check(spec: LeadField, raw: str, locale: str) -> tuple[str | None, str | None]:
    """(normalised value or None if absent, error message or None)."""
    if spec.type is FieldType.CONSENT:
        lowered = raw.strip().lower()
        if lowered not in TRUE_VALUES | FALSE_VALUES:
            return None, FIELD_BOOLEAN()
        given = lowered in TRUE_VALUES
        if spec.required and not given:
            return None, CONSENT_REQUIRED()
        return ("true" if given else "false"), None
    if not raw.strip():
        return None, (FIELD_REQUIRED() if spec.required else None)
    if len(raw) > MAX_VALUE_CHARS:
        return None, FIELD_TOO_LONG(limit=MAX_VALUE_CHARS)
    if spec.type is FieldType.EMAIL:
        email = normalise_email(raw)
        return (email, None) if email else (None, FIELD_EMAIL())
    if spec.type is FieldType.PHONE:
        phone = normalise_phone(raw, locale)
        if phone is None:
            return None, FIELD_PHONE()
        return phone, None
    return " ".join(raw.split()), None


def validate_lead(
    specs: tuple[LeadField, ...], fields: Mapping[str, str], locale: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (normalised values, errors by field name); errors empty means valid."""
    known = {spec.name for spec in specs}
    errors = {name: NOT_A_FIELD() for name in fields if name not in known}
    values: dict[str, str] = {}
    for spec in specs:
        value, error = _check(spec, fields.get(spec.name, ""), locale)
        if error:
            errors[spec.name] = error
        elif value is not None:
            values[spec.name] = value
    if not errors and not any(
        spec.name in values for spec in specs if spec.type in (FieldType.EMAIL, FieldType.PHONE)
    ):
        errors["_form"] = CONTACT_NEEDED()
    return values, errors
