"""Lead field validation and normalisation."""

from __future__ import annotations

import pytest

from schemas.flow import FieldType, LeadField
from services.conversation.leads import (
    MAX_VALUE_CHARS,
    normalise_email,
    normalise_phone,
    region_of,
    validate_lead,
)

NAME = LeadField("name", FieldType.TEXT, "Name", required=True)
EMAIL = LeadField("email", FieldType.EMAIL, "Email", required=False)
PHONE = LeadField("phone", FieldType.PHONE, "Phone", required=False)
CONSENT = LeadField("consent", FieldType.CONSENT, "I agree", required=True)
FORM = (NAME, EMAIL, PHONE, CONSENT)
OK = {"name": "Ann", "email": "ann@example.com", "consent": "true"}


def errors_of(fields: dict[str, str], specs: tuple[LeadField, ...] = FORM) -> dict[str, str]:
    return validate_lead(specs, fields, "en-GB")[1]


def values_of(fields: dict[str, str], specs: tuple[LeadField, ...] = FORM) -> dict[str, str]:
    values, errors = validate_lead(specs, fields, "en-GB")
    assert errors == {}
    return values


# --- email ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "ann.lee@example.co.uk",
        "ann+quotes@example.com",
        "o'brien@example.ie",
        "a_b-c@sub-domain.example.org",
        "x@e.io",
    ],
)
def test_valid_email_is_accepted(email: str) -> None:
    """Common real-world address shapes must not be refused."""
    assert normalise_email(email) == email


@pytest.mark.parametrize(
    "email",
    [
        "ann",
        "@example.com",
        "ann@example",
        "ann@@example.com",
        "ann lee@example.com",
        "ann..lee@example.com",
        "ann@-example.com",
        "ann@example.com.",
        "ann@exämple.com",
        "a" * 65 + "@example.com",
    ],
)
def test_invalid_email_is_rejected(email: str) -> None:
    """Addresses that cannot be delivered to must be refused."""
    assert normalise_email(email) is None


def test_email_domain_is_lowercased_but_local_part_kept_and_trimmed() -> None:
    """Only the case-insensitive domain may be normalised; the local part is the owner's."""
    assert normalise_email("  Ann.Lee@Example.COM \n") == "Ann.Lee@example.com"


@pytest.mark.parametrize("email", [".ann@example.com", "ann.@example.com"])
def test_email_local_part_cannot_start_or_end_with_a_dot(email: str) -> None:
    """A dot-atom local part may not start or end with '.', like '..' it is undeliverable."""
    assert normalise_email(email) is None


# --- phone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "locale", "e164"),
    [
        ("020 7946 0958", "en-GB", "+442079460958"),
        ("07911 123456", "en_GB", "+447911123456"),
        ("+1 415 555 2671", "en", "+14155552671"),
        ("0049 30 901820", "en", "+4930901820"),
        ("  +33 1 23 45 67 89  ", "en-GB", "+33123456789"),
    ],
)
def test_phone_is_normalised_to_e164_with_locale_region(raw: str, locale: str, e164: str) -> None:
    """National numbers take the visitor's region; 00 and + prefixes are international."""
    assert normalise_phone(raw, locale) == e164


@pytest.mark.parametrize(
    ("raw", "locale"),
    [
        ("020 7946 0958", "en"),  # national number, but no region to read it in
        ("+44 20 7946 095", "en-GB"),  # one digit short
        ("+999 1234", "en"),  # no such country code
    ],
)
def test_invalid_phone_is_rejected(raw: str, locale: str) -> None:
    """Numbers that are not valid for their region must not be stored as leads."""
    assert normalise_phone(raw, locale) is None


@pytest.mark.parametrize(
    ("locale", "region"),
    [("en_us", "US"), ("zh-Hant-TW", "TW"), ("en", None)],
)
def test_region_of_reads_the_two_letter_region(locale: str, region: str | None) -> None:
    """Only a trailing two-letter subtag is a region; scripts and numeric areas are not."""
    assert region_of(locale) == region


def test_phone_field_uses_locale_passed_to_validate_lead() -> None:
    """validate_lead must normalise phones in the visitor's region."""
    values, errors = validate_lead((PHONE,), {"phone": "030 901820"}, "de-DE")
    assert (values, errors) == ({"phone": "+4930901820"}, {})


# --- the form --------------------------------------------------------------------


def test_valid_form_gives_normalised_values() -> None:
    """A valid form must give every normalised value and no errors."""
    values = values_of({**OK, "phone": "020 7946 0958", "email": "Ann@Example.com"})
    assert values == {
        "name": "Ann",
        "email": "Ann@example.com",
        "phone": "+442079460958",
        "consent": "true",
    }


def test_missing_required_text_field_is_an_error() -> None:
    """A required field left empty (or only spaces) must be reported as required."""
    assert errors_of({**OK, "name": "   "}) == {"name": "is required"}
    assert errors_of({"email": "ann@example.com", "consent": "true"}) == {"name": "is required"}


def test_missing_optional_field_is_left_out() -> None:
    """An optional field not given must be absent from the values, not an empty string."""
    assert "phone" not in values_of(OK)


@pytest.mark.parametrize("given", ["TRUE", "yes", " 1 "])
def test_consent_true_values_give_consent(given: str) -> None:
    """Every documented spelling of yes must be stored as consent "true"."""
    assert values_of({**OK, "consent": given})["consent"] == "true"


@pytest.mark.parametrize("given", ["no", ""])
def test_consent_false_values_refuse_required_consent(given: str) -> None:
    """A required consent that was not given must block the lead."""
    assert errors_of({**OK, "consent": given}) == {"consent": "consent is required"}


def test_optional_consent_not_given_is_stored_as_false() -> None:
    """An optional consent left unticked must be recorded explicitly as "false"."""
    optional = LeadField("consent", FieldType.CONSENT, "News", required=False)
    values = values_of({"email": "ann@example.com"}, (EMAIL, optional))
    assert values == {"email": "ann@example.com", "consent": "false"}


def test_consent_other_value_is_an_error() -> None:
    """A consent value that is neither true nor false must not be guessed."""
    assert errors_of({**OK, "consent": "maybe"}) == {"consent": "must be true or false"}


def test_unknown_field_is_rejected() -> None:
    """A field the form does not define must be refused, not silently stored."""
    assert errors_of({**OK, "ssn": "123"}) == {"ssn": "is not a field of this form"}


def test_neither_email_nor_phone_gives_form_error() -> None:
    """A lead that cannot be contacted must fail with a form-level ``_form`` error."""
    assert set(errors_of({"name": "Ann", "consent": "true"})) == {"_form"}


def test_phone_alone_is_enough_to_reach_the_lead() -> None:
    """Either contact channel must suffice: a phone without email is valid."""
    values = values_of({"name": "Ann", "phone": "+1 415 555 2671", "consent": "yes"})
    assert values["phone"] == "+14155552671"


def test_form_error_is_not_added_on_top_of_field_errors() -> None:
    """The ``_form`` error must only appear once every field is otherwise valid."""
    assert set(errors_of({"consent": "true"})) == {"name"}


def test_value_of_max_length_is_accepted_and_longer_is_refused() -> None:
    """Values are capped at MAX_VALUE_CHARS characters, inclusive."""
    assert values_of({**OK, "name": "n" * MAX_VALUE_CHARS})["name"] == "n" * MAX_VALUE_CHARS
    errors = errors_of({**OK, "name": "n" * (MAX_VALUE_CHARS + 1)})
    assert errors == {"name": f"must be at most {MAX_VALUE_CHARS} characters"}


def test_text_fields_collapse_whitespace() -> None:
    """Text values must be trimmed and inner runs of whitespace collapsed to one space."""
    assert values_of({**OK, "name": "  Ann \t\n  Lee  "})["name"] == "Ann Lee"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "ann-at-secret.example"),
        ("phone", "+999 555 0101"),
        ("name", "x" * 150 + "secret" + "x" * 100),
    ],
)
def test_error_messages_never_echo_values(field: str, value: str) -> None:
    """Errors are logged and shown: they must name the problem, never repeat the value."""
    errors = errors_of({**OK, field: value})
    assert set(errors) == {field}
    assert value not in errors[field]
    assert "secret" not in errors[field]
    assert "0101" not in errors[field]
