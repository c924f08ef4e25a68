"""Attempt limits (sign-in, registration, gateway enrolment) kept in PostgreSQL, so every
API process and every restart sees the same counts (table ``auth_throttle``,
migration 0005).

A sliding window: at most ``max_attempts`` counted attempts per key within
``window_s`` seconds.  :meth:`Throttle.acquire` checks and counts an attempt in one
atomic upsert *before* the credentials are verified, so parallel requests spread over
many workers cannot all pass the check before any failure is recorded.  The caller
then keeps the attempt (a failure), :meth:`Throttle.reset` the key (a successful
sign-in), or :meth:`Throttle.forgive` it (a success that should not count).  Times come
from the database clock, one clock for all processes.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

from api.core.security import digest

# Expired rows are deleted at most this often per process (cheap: indexed on expiry).
PURGE_EVERY_S = 60.0

# Counts the attempt unless the key already has max_attempts inside the window; the
# ON CONFLICT row lock serialises concurrent attempts on one key across processes.
_ACQUIRE = b"""
INSERT INTO auth_throttle AS t (scope, key_hash, attempts, expires_at)
VALUES (%(scope)s, %(key)s, ARRAY[now()], now() + %(window)s)
ON CONFLICT (scope, key_hash) DO UPDATE
SET attempts = ARRAY(
        SELECT a FROM unnest(t.attempts) AS a WHERE a > now() - %(window)s ORDER BY a
    ) || now(),
    expires_at = now() + %(window)s
WHERE (SELECT count(*) FROM unnest(t.attempts) AS a WHERE a > now() - %(window)s)
    < %(max)s
RETURNING now()
"""

# When the oldest of the last max_attempts attempts leaves the window.
_RETRY_IN = b"""
SELECT a + %(window)s - now()
FROM auth_throttle t, unnest(t.attempts) AS a
WHERE t.scope = %(scope)s AND t.key_hash = %(key)s AND a > now() - %(window)s
ORDER BY a DESC OFFSET %(max)s - 1 LIMIT 1
"""


class Throttled(Exception):
    """Too many attempts for a key; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry in {retry_after} s")
        self.retry_after = retry_after


class Throttle:
    """One limit (``scope``) over many keys, shared through the database."""

    def __init__(self, scope: str, max_attempts: int, window_s: int) -> None:
        self.scope = scope
        self.max_attempts = max_attempts
        self.window = timedelta(seconds=window_s)
        self._purged_at = -PURGE_EVERY_S

    def _params(self, key: str) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "key": digest(key),
            "window": self.window,
            "max": self.max_attempts,
        }

    def acquire(self, conn: psycopg.Connection[Any], key: str) -> datetime:
        """Count an attempt for ``key`` and return its time (for :meth:`forgive`), or
        raise :class:`Throttled` without counting it when the key is over its limit."""
        self._purge_now_and_then(conn)
        params = self._params(key)
        row = conn.execute(_ACQUIRE, params).fetchone()
        if row is not None:
            at: datetime = row[0]
            return at
        left = conn.execute(_RETRY_IN, params).fetchone()
        # Same rounding as before the move to the database: whole seconds, at least 1.
        wait = 1 if left is None else int(left[0].total_seconds()) + 1
        raise Throttled(max(1, wait))

    def forgive(self, conn: psycopg.Connection[Any], key: str, at: datetime) -> None:
        """Un-count the attempt made at ``at`` (it succeeded, and successes are free)."""
        conn.execute(
            "UPDATE auth_throttle SET attempts = array_remove(attempts, %(at)s)"
            " WHERE scope = %(scope)s AND key_hash = %(key)s",
            {**self._params(key), "at": at},
        )

    def reset(self, conn: psycopg.Connection[Any], key: str) -> None:
        """Forget every attempt for ``key``."""
        conn.execute(
            "DELETE FROM auth_throttle WHERE scope = %(scope)s AND key_hash = %(key)s",
            self._params(key),
        )

    def purge(self, conn: psycopg.Connection[Any]) -> int:
        """Delete the rows of every scope whose window has passed; how many."""
        cur = conn.execute("DELETE FROM auth_throttle WHERE expires_at <= now()")
        self._purged_at = time.monotonic()
        return cur.rowcount

    def _purge_now_and_then(self, conn: psycopg.Connection[Any]) -> None:
        # Unlocked on purpose: two threads purging at once only repeat a cheap DELETE.
        if time.monotonic() - self._purged_at >= PURGE_EVERY_S:
            self.purge(conn)
