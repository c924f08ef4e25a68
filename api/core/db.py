"""The connection pool (autocommit connections; multi-statement writes open an explicit
``conn.transaction()``), and ``count_rows`` for the totals of paged lists."""

from __future__ import annotations

import threading
from typing import Any, LiteralString

import psycopg
from fastapi import FastAPI
from psycopg.abc import Params
from psycopg_pool import ConnectionPool

from api.core.config import ApiSettings


def _configure(conn: psycopg.Connection[Any]) -> None:
    # A runaway query must not pin a pooled connection (and a request thread) forever.
    conn.execute("SET statement_timeout = '30s'")
    conn.execute("SET application_name = 'homevitals-api'")


def make_pool(settings: ApiSettings) -> ConnectionPool[psycopg.Connection[Any]]:
    return ConnectionPool(
        settings.database_url,
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_max_size, settings.pool_min_size),
        kwargs={"autocommit": True},
        configure=_configure,
        open=False,
        name="homevitals-api",
        timeout=10.0,
    )


_pool_lock = threading.Lock()


def get_pool(app: FastAPI) -> ConnectionPool[psycopg.Connection[Any]]:
    """The app's pool, opened on first use if the lifespan did not run (bare ASGI use)."""
    pool: ConnectionPool[psycopg.Connection[Any]] | None = getattr(app.state, "pool", None)
    if pool is None or pool.closed:
        with _pool_lock:
            pool = getattr(app.state, "pool", None)
            if pool is None or pool.closed:
                pool = make_pool(app.state.settings)
                pool.open(wait=True, timeout=30.0)
                app.state.pool = pool
    return pool


def count_rows(
    conn: psycopg.Connection[Any], query: LiteralString | bytes, params: Params | None = None
) -> int:
    """The number a ``SELECT count(*) ...`` answers."""
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0
