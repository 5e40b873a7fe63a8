"""One way to make a Redis client, for every service that talks to Redis.

redis-py's default pool raises ``MaxConnectionsError`` as soon as more than its
bound of commands are in flight at once (a page of 200 leads read one key at
a time took the read API down with a 500). The pool here *waits* for a free
connection instead, up to ``wait_seconds``, so a burst queues, bounded, and
only a Redis that stays away turns into an error (a ``ConnectionError`` the
callers already treat as "Redis unavailable").
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

MAX_CONNECTIONS = 64
WAIT_SECONDS = 5.0


def redis_client(
    url: str, *, max_connections: int = MAX_CONNECTIONS, wait_seconds: float = WAIT_SECONDS
) -> Redis:
    """A lazy client (it connects on its first command) with a waiting pool;
    ``aclose()`` closes the pool too."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_seconds
    )
    return Redis.from_pool(pool)
