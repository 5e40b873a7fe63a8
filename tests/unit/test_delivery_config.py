"""Destinations from the sites file: every mistake fails at start-up, named.

An operator reading the error must find the site, the destination and the
field at once; a secret must never be needed in the sites file itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.delivery.config import (
    DeliveryConfigError,
    DeliverySettings,
    destinations_of,
    smtp_from_env,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"HOOK_SECRETS": SECRET, "SLACK_URL": "https://hooks.slack.com/services/T/B/x", "PW": "pw"}


@dataclass
class Site:
    id: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)


def read_file(path: str) -> str:
    if path == "/run/secrets/hook":
        return SECRET + "\n"
    raise FileNotFoundError(2, "No such file or directory")


def load(*deliveries: dict[str, Any], settings: DeliverySettings | None = None) -> Any:
    return destinations_of(
        [Site("demo", list(deliveries))], ENV, read_file, settings or DeliverySettings()
    )


WEBHOOK = {
    "name": "crm",
    "type": "webhook",
    "url": "https://crm.example/h",
    "secrets_env": "HOOK_SECRETS",
}
SMTP = {"host": "smtp.example.com", "port": 587, "username": "u", "password_env": "PW"}
EMAIL = {"name": "sales", "type": "email", "to": ["a@example.com"], "from": "l@example.com",
         "smtp": SMTP}  # fmt: skip


def test_good_destinations_load() -> None:
    slack = {"name": "team", "type": "slack", "url_env": "SLACK_URL"}
    filed = {**WEBHOOK, "name": "filed", "secrets_env": None, "secrets_file": "/run/secrets/hook"}
    del filed["secrets_env"]
    out = load(WEBHOOK, slack, EMAIL, filed)
    assert out[("demo", "crm")].secrets == (SECRET,)
    assert out[("demo", "filed")].secrets == (SECRET,)
    assert out[("demo", "team")].url.startswith("https://hooks.slack.com/")
    smtp = out[("demo", "sales")].smtp
    assert smtp is not None and (smtp.port, smtp.starttls, smtp.password) == (587, True, "pw")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x", "type": "fax"}, "site 'demo', destination 'x': 'type' must be one of"),
        ({**WEBHOOK, "url": "not a url"}, "destination 'crm': 'url' must be an https:// URL"),
        ({**WEBHOOK, "url": "http://crm.example/h"}, "destination 'crm': 'url' must be an https://"),
        ({**WEBHOOK, "url": "https://u:p@crm.example/"}, "'url' must not carry credentials"),
        ({**WEBHOOK, "secrets_env": "NOPE"}, "the environment variable NOPE is not set"),
        ({**{k: v for k, v in WEBHOOK.items() if k != "secrets_env"}, "secrets_file": "/nope"},
         "destination 'crm': 'secrets_file': cannot read /nope"),
        ({**WEBHOOK, "secrets_env": "PW"}, "'secrets_file': a webhook secret starts with 'whsec_'"),
        ({**EMAIL, "smtp": {**SMTP, "port": 70000}}, "'sales': 'smtp.port' must be a port"),
        ({**EMAIL, "smtp": {**SMTP, "port": "587"}}, "'sales': 'smtp.port' must be a port"),
        ({**WEBHOOK, "colour": "red"}, "destination 'crm': unknown field 'colour'"),
        ({**EMAIL, "smtp": {**SMTP, "tls": True}}, "'sales': 'smtp': unknown field 'tls'"),
        ({**EMAIL, "to": ["not-an-address"]}, "'sales': 'to' must list e-mail addresses"),
        ({"name": "Bad Name", "type": "webhook"}, "site 'demo': deliveries[0]: 'name' must be"),
    ],
)  # fmt: skip
def test_every_error_names_the_site_destination_and_field(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeliveryConfigError) as caught:
        load(raw)
    assert message in str(caught.value)
    assert "site 'demo'" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_http_urls_only_when_allowed() -> None:
    ok = load(
        {**WEBHOOK, "url": "http://crm.example/h"}, settings=DeliverySettings(allow_http=True)
    )
    assert ok[("demo", "crm")].url == "http://crm.example/h"
    env_http = {**ENV, "SLACK_URL": "http://hooks.slack.com/x"}
    slack = [Site("demo", [{"name": "team", "type": "slack", "url_env": "SLACK_URL"}])]
    with pytest.raises(DeliveryConfigError, match="'url_env' must be an https:// URL"):
        destinations_of(slack, env_http, read_file, DeliverySettings())
    allowed = destinations_of(slack, env_http, read_file, DeliverySettings(allow_http=True))
    assert allowed[("demo", "team")].url == "http://hooks.slack.com/x"
    with pytest.raises(DeliveryConfigError, match="'url' must be an https:// URL"):
        load({**WEBHOOK, "url": "http://crm.example/h"})


def test_duplicate_names_in_a_site_are_refused() -> None:
    with pytest.raises(
        DeliveryConfigError, match="site 'demo': destination 'crm' is defined twice"
    ):
        load(WEBHOOK, WEBHOOK)


def test_smtp_from_env() -> None:
    assert smtp_from_env({}) is None
    server = smtp_from_env(
        {
            "LEADFLOW_SMTP_HOST": "mail.example",
            "LEADFLOW_SMTP_PORT": "465",
            "LEADFLOW_SMTP_FROM": "l@x.io",
        }
    )
    assert server is not None and (server.port, server.starttls) == (465, False)
    with pytest.raises(DeliveryConfigError, match="LEADFLOW_SMTP_PORT"):
        smtp_from_env({"LEADFLOW_SMTP_HOST": "mail.example", "LEADFLOW_SMTP_PORT": "0"})


def test_an_email_destination_without_from_uses_the_default_sender() -> None:
    no_from = {k: v for k, v in EMAIL.items() if k != "from"}
    assert load(no_from)[("demo", "sales")].smtp is not None
    assert smtp_from_env({"LEADFLOW_SMTP_HOST": "mail.example"}) is not None
