"""Where a site's leads go: the ``deliveries`` of the sites file, checked (pure).

Each destination names a ``type`` (``webhook``, ``email``, ``slack``) and a
``name`` unique in its site. Secrets never sit in the sites file: a webhook's
signing secrets come from an environment variable (``secrets_env``) or a
mounted file (``secrets_file``), a Slack incoming-webhook URL (itself a
secret) from ``url_env``/``url_file``, SMTP passwords from
``password_env``/``password_file``. Anything wrong fails at start-up with a
message naming the site, the destination and the field
(:class:`DeliveryConfigError`). docs/delivery.md has examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from services.delivery.model import NAME
from services.delivery.signing import BadSecret, secret_key

ReadFile = Callable[[str], str]
KINDS = ("webhook", "email", "slack")
MAX_CONCURRENCY = 64


class DeliveryConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int = 587
    starttls: bool = True  # STARTTLS after connecting (port 465: TLS from the start)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "leads@localhost"
    timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class Destination:
    site_id: str
    name: str
    kind: str
    url: str = field(default="", repr=False)  # webhook and slack (slack's URL is a secret)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # webhook: whsec_ secrets
    recipients: tuple[str, ...] = ()  # email
    smtp: SmtpServer | None = None  # email
    concurrency: int = 4  # attempts in flight at once, at most

    @property
    def key(self) -> tuple[str, str]:
        return (self.site_id, self.name)


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """What the sites file does not say (environment, docs/delivery.md)."""

    allow_http: bool = False  # webhook and Slack URLs may be http:// (tests, local relays)
    smtp: SmtpServer | None = None  # the default SMTP server (LEADFLOW_SMTP_*)


def destinations_of(
    sites: Iterable[Any], env: Mapping[str, str], read_file: ReadFile, settings: DeliverySettings
) -> dict[tuple[str, str], Destination]:
    """Every site's destinations, keyed by (site id, name)."""
    out: dict[tuple[str, str], Destination] = {}
    for site in sites:
        for i, raw in enumerate(site.deliveries):
            dest = _destination(site.id, i, raw, env, read_file, settings)
            if dest.key in out:
                raise DeliveryConfigError(
                    f"site {site.id!r}: destination {dest.name!r} is defined twice"
                )
            out[dest.key] = dest
    return out


def _destination(
    site_id: str,
    index: int,
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    read_file: ReadFile,
    settings: DeliverySettings,
) -> Destination:
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DeliveryConfigError(
            f"site {site_id!r}: deliveries[{index}]: 'name' must be 1-40 lowercase letters,"
            " digits, '-' or '_'"
        )
    where = f"site {site_id!r}, destination {name!r}"
    kind = raw.get("type")
    if kind not in KINDS:
        raise DeliveryConfigError(f"{where}: 'type' must be one of {', '.join(KINDS)}")
    known = _FIELDS[kind] | {"name", "type", "concurrency"}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise DeliveryConfigError(f"{where}: unknown field {unknown[0]!r}")
    secrets = _Secrets(where, raw, env, read_file)
    concurrency = raw.get("concurrency", 4)
    if type(concurrency) is not int or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise DeliveryConfigError(f"{where}: 'concurrency' must be 1 to {MAX_CONCURRENCY}")
    base = Destination(site_id, name, kind, concurrency=concurrency)
    if kind == "webhook":
        url = _url(where, "url", raw.get("url"), settings.allow_http)
        values = secrets.many("secrets")
        for value in values:
            try:
                secret_key(value)
            except BadSecret as exc:
                raise DeliveryConfigError(f"{where}: 'secrets_env'/'secrets_file': {exc}") from None
        return replace(base, url=url, secrets=tuple(values))
    if kind == "slack":
        url = _url(where, "url_env", secrets.one("url"), settings.allow_http)
        return replace(base, url=url)
    return _email(base, where, raw, secrets, settings)


_FIELDS = {
    "webhook": {"url", "secrets_env", "secrets_file"},
    "slack": {"url_env", "url_file"},
    "email": {"to", "from", "smtp"},
}
_SMTP_FIELDS = {"host", "port", "starttls", "username", "password_env", "password_file"}


class _Secrets:
    """``<field>_env`` names an environment variable, ``<field>_file`` a file."""

    def __init__(
        self, where: str, raw: Mapping[str, Any], env: Mapping[str, str], read_file: ReadFile
    ) -> None:
        self.where, self.raw, self.env, self.read_file = where, raw, env, read_file

    def one(self, name: str, required: bool = True) -> str | None:
        env_key, file_key = f"{name}_env", f"{name}_file"
        var, path = self.raw.get(env_key), self.raw.get(file_key)
        if var is not None and path is not None:
            raise DeliveryConfigError(f"{self.where}: give '{env_key}' or '{file_key}', not both")
        if isinstance(var, str) and var:
            value = self.env.get(var, "").strip()
            if not value:
                raise DeliveryConfigError(
                    f"{self.where}: '{env_key}': the environment variable {var} is not set"
                )
            return value
        if isinstance(path, str) and path:
            try:
                value = self.read_file(path).strip()
            except OSError as exc:
                raise DeliveryConfigError(
                    f"{self.where}: '{file_key}': cannot read {path} ({exc.strerror})"
                ) from None
            if not value:
                raise DeliveryConfigError(f"{self.where}: '{file_key}': {path} is empty")
            return value
        if var is not None or path is not None:
            raise DeliveryConfigError(f"{self.where}: '{env_key}'/'{file_key}' must be a name")
        if required:
            raise DeliveryConfigError(f"{self.where}: '{env_key}' or '{file_key}' is required")
        return None

    def many(self, name: str) -> list[str]:
        value = self.one(name)
        assert value is not None
        return [v for v in value.replace(",", " ").split() if v]


def _url(where: str, field_name: str, value: object, allow_http: bool) -> str:
    if not isinstance(value, str) or not value:
        raise DeliveryConfigError(f"{where}: '{field_name}' is required")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise DeliveryConfigError(f"{where}: '{field_name}' is not a valid URL") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise DeliveryConfigError(f"{where}: '{field_name}' must be an {allowed} URL")
    if parts.username or parts.password:
        raise DeliveryConfigError(f"{where}: '{field_name}' must not carry credentials")
    del port
    return value


def _email(
    base: Destination,
    where: str,
    raw: Mapping[str, Any],
    secrets: _Secrets,
    settings: DeliverySettings,
) -> Destination:
    to = raw.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(_address(a) for a in to):
        raise DeliveryConfigError(f"{where}: 'to' must list e-mail addresses")
    smtp = _smtp(where, raw.get("smtp"), secrets.env, secrets.read_file, settings.smtp)
    sender = raw.get("from", smtp.sender)
    if not isinstance(sender, str) or not _address(sender):
        raise DeliveryConfigError(f"{where}: 'from' must be an e-mail address")
    return replace(base, recipients=tuple(to), smtp=replace(smtp, sender=sender))


def _address(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 254 or "\n" in value or "\r" in value:
        return False
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and " " not in value)


def _smtp(
    where: str,
    raw: object,
    env: Mapping[str, str],
    read_file: ReadFile,
    default: SmtpServer | None,
) -> SmtpServer:
    if raw is None:
        if default is None:
            raise DeliveryConfigError(
                f"{where}: 'smtp' is required (or set LEADFLOW_SMTP_HOST for every site)"
            )
        return default
    if not isinstance(raw, Mapping):
        raise DeliveryConfigError(f"{where}: 'smtp' must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _SMTP_FIELDS)
    if unknown:
        raise DeliveryConfigError(f"{where}: 'smtp': unknown field {unknown[0]!r}")
    host = raw.get("host")
    if not isinstance(host, str) or not host or any(c in host for c in " /\n"):
        raise DeliveryConfigError(f"{where}: 'smtp.host' must be a host name")
    port = raw.get("port", 587)
    if type(port) is not int or not 1 <= port <= 65535:
        raise DeliveryConfigError(f"{where}: 'smtp.port' must be a port number (1-65535)")
    starttls = raw.get("starttls", port != 465)
    if not isinstance(starttls, bool):
        raise DeliveryConfigError(f"{where}: 'smtp.starttls' must be true or false")
    username = raw.get("username")
    if username is not None and not isinstance(username, str):
        raise DeliveryConfigError(f"{where}: 'smtp.username' must be a string")
    password = _Secrets(f"{where}: smtp", raw, env, read_file).one("password", required=False)
    if username and password is None:
        raise DeliveryConfigError(
            f"{where}: 'smtp.password_env' or 'smtp.password_file' is required"
        )
    sender = default.sender if default is not None else "leads@localhost"
    return SmtpServer(host, port, starttls, username, password, sender)


def smtp_from_env(env: Mapping[str, str]) -> SmtpServer | None:
    """``LEADFLOW_SMTP_HOST`` (and _PORT, _STARTTLS, _USERNAME, _PASSWORD, _FROM):
    the SMTP server of e-mail destinations that name none."""
    host = env.get("LEADFLOW_SMTP_HOST", "").strip()
    if not host:
        return None
    raw_port = env.get("LEADFLOW_SMTP_PORT", "").strip() or "587"
    if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
        raise DeliveryConfigError("LEADFLOW_SMTP_PORT must be a port number (1-65535)")
    port = int(raw_port)
    tls = env.get("LEADFLOW_SMTP_STARTTLS", "").strip().lower() or str(port != 465).lower()
    if tls not in ("true", "false", "1", "0", "yes", "no"):
        raise DeliveryConfigError("LEADFLOW_SMTP_STARTTLS must be true or false")
    username = env.get("LEADFLOW_SMTP_USERNAME") or None
    password = env.get("LEADFLOW_SMTP_PASSWORD") or None
    if username and not password:
        raise DeliveryConfigError("LEADFLOW_SMTP_USERNAME is set but LEADFLOW_SMTP_PASSWORD is not")
    sender = env.get("LEADFLOW_SMTP_FROM", "").strip() or "leads@localhost"
    if not _address(sender):
        raise DeliveryConfigError("LEADFLOW_SMTP_FROM must be an e-mail address")
    return SmtpServer(host, port, tls in ("true", "1", "yes"), username, password, sender)
