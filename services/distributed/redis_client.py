"""One way to make a Redis client, for every service that talks to Redis.

redis-py's default pool raises ``MaxConnectionsError`` as soon as more than its
bound of commands are in flight at once (a page of 200 leads read one key at
a time took the read API down with a 500). The pool here *waits* for a free
connection instead, up to ``wait_seconds``, so a burst queues, bounded, and
only a Redis that stays away turns into an error (a ``ConnectionError`` the
callers already treat as "Redis unavailable").

TLS and ACL users: a ``rediss://`` URL turns TLS on; the user name and password
come from the URL (``rediss://user:password@host:6380/0``) or, so that no password
has to be in a URL, a manifest or on a command line, from these variables:

| variable | default | meaning |
|---|---|---|
| LEADFLOW_REDIS_USERNAME | (none: ``default``) | ACL user, when the URL names none |
| LEADFLOW_REDIS_PASSWORD | (none) | its password, when the URL has none |
| LEADFLOW_REDIS_PASSWORD_FILE | (none) | file with the password (a mounted secret); wins |
| LEADFLOW_REDIS_CA_FILE | system CAs | PEM CA bundle to check the server's certificate |
| LEADFLOW_REDIS_CERT_FILE | (none) | PEM client certificate (mutual TLS, rediss://) |
| LEADFLOW_REDIS_KEY_FILE | (none) | PEM key of that certificate |
| LEADFLOW_REDIS_SSL_CHECK_HOSTNAME | true | check the server's host name against its certificate |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis

from services.distributed.kafka_security import flag_from_env, secret_from_env

MAX_CONNECTIONS = 64
WAIT_SECONDS = 5.0


def redis_connection_kwargs(url: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The connection options the URL does not carry: credentials from the environment
    (the URL's own, when it has them, win: redis-py lets the URL override these) and,
    for ``rediss://``, the CA file, client certificate and host name check."""
    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {}
    username = env.get("LEADFLOW_REDIS_USERNAME") or None
    password = secret_from_env(env, "LEADFLOW_REDIS_PASSWORD")
    if username is not None:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if urlsplit(url).scheme == "rediss":
        ca_file = env.get("LEADFLOW_REDIS_CA_FILE") or None
        cert_file = env.get("LEADFLOW_REDIS_CERT_FILE") or None
        key_file = env.get("LEADFLOW_REDIS_KEY_FILE") or None
        if (cert_file is None) != (key_file is None):
            raise ValueError("LEADFLOW_REDIS_CERT_FILE and LEADFLOW_REDIS_KEY_FILE go together")
        kwargs["ssl_cert_reqs"] = "required"
        kwargs["ssl_check_hostname"] = flag_from_env(env, "LEADFLOW_REDIS_SSL_CHECK_HOSTNAME", True)
        if ca_file is not None:
            kwargs["ssl_ca_certs"] = ca_file
        if cert_file is not None:
            kwargs["ssl_certfile"] = cert_file
            kwargs["ssl_keyfile"] = key_file
    return kwargs


def redis_client(
    url: str,
    *,
    max_connections: int = MAX_CONNECTIONS,
    wait_seconds: float = WAIT_SECONDS,
    env: Mapping[str, str] | None = None,
) -> Redis:
    """A lazy client (it connects on its first command) with a waiting pool;
    ``aclose()`` closes the pool too. TLS and credentials as the module says."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_seconds,
        **redis_connection_kwargs(url, env),
    )
    return Redis.from_pool(pool)
