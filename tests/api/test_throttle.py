"""Sign-in limits live in PostgreSQL: separate app instances (as separate worker
processes would) and a restarted app share them; they lapse after their window."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import psycopg
import pytest
from api_helpers import PASSWORD
from fastapi.testclient import TestClient

from api.bootstrap import create_user
from api.core.config import ApiSettings
from api.core.security import digest
from api.core.throttle import Throttle, Throttled
from api.main import create_app

WRONG = "not the password"


def _client(settings: ApiSettings, stack: ExitStack) -> TestClient:
    """A TestClient on a fresh app (its own pool and state), closed with ``stack``."""
    return stack.enter_context(TestClient(create_app(settings), base_url="https://testserver"))


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def _rows(db: psycopg.Connection[Any], key: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM auth_throttle WHERE scope = 'login' AND key_hash = %s",
        (digest(key),),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def username(db: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"throttled-{uuid.uuid4().hex[:6]}"
    create_user(db, name, PASSWORD, "clinician")
    yield name
    Throttle("login", 1, 1).reset(db, f"{name}|testclient")


def test_two_app_instances_share_the_login_limit(
    api_settings: ApiSettings, db: psycopg.Connection[Any], username: str
) -> None:
    with ExitStack() as stack:
        first, second = _client(api_settings, stack), _client(api_settings, stack)
        # 5 failures spread over both instances: in-process limits would allow 10.
        for client in (first, second, first, second, first):
            r = _login(client, username, WRONG)
            assert r.status_code == 401, r.text
            assert r.json() == {"detail": "incorrect username or password"}
        for client in (second, first):
            limited = _login(client, username, PASSWORD)
            assert limited.status_code == 429
            wait = int(limited.headers["Retry-After"])
            assert 0 < wait <= api_settings.login_window_s
            assert limited.json()["detail"] == f"too many failed sign-ins; retry in {wait} s"
    # A restarted API (a new app, new pool) still remembers.
    with ExitStack() as stack:
        restarted = _client(api_settings, stack)
        assert _login(restarted, username, PASSWORD).status_code == 429
    audited = db.execute(
        "SELECT status, detail->>'reason' FROM audit_log WHERE action = 'auth.login'"
        " AND actor = %s ORDER BY id",
        (username,),
    ).fetchall()
    assert [tuple(r) for r in audited] == [(401, "bad credentials")] * 5 + [
        (429, "rate limited")
    ] * 3


def test_limit_lapses_after_its_window_and_success_clears_it(
    api_settings: ApiSettings, db: psycopg.Connection[Any], username: str
) -> None:
    short = api_settings.model_copy(update={"login_max_failures": 2, "login_window_s": 2})
    with ExitStack() as stack:
        first, second = _client(short, stack), _client(short, stack)
        assert _login(first, username, WRONG).status_code == 401
        assert _login(second, username, WRONG).status_code == 401
        limited = _login(first, username, PASSWORD)
        assert limited.status_code == 429
        wait = int(limited.headers["Retry-After"])
        assert 1 <= wait <= 3
        time.sleep(wait)  # Retry-After is honest: after it, the window has passed
        assert _login(second, username, PASSWORD).status_code == 200
        assert _rows(db, f"{username}|testclient") == 0  # a success forgets the failures
        # One failure after the success does not lock the account.
        assert _login(first, username, WRONG).status_code == 401
        assert _login(second, username, PASSWORD).status_code == 200


def test_acquire_is_atomic_across_connections(database_url: str) -> None:
    throttle = Throttle("test", 5, 60)
    key = f"race-{uuid.uuid4().hex}"
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def attempt() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            try:
                throttle.acquire(conn, key)
                outcomes.append("counted")
            except Throttled:
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["counted"] * 5 + ["refused"] * 7


def test_forgive_uncounts_and_purge_expires(db: psycopg.Connection[Any]) -> None:
    throttle = Throttle("test", 2, 60)
    key = f"forgive-{uuid.uuid4().hex}"
    at: datetime = throttle.acquire(db, key)
    throttle.forgive(db, key, at)
    throttle.acquire(db, key)
    throttle.acquire(db, key)  # two counted: the forgiven one is gone
    with pytest.raises(Throttled) as refused:
        throttle.acquire(db, key)
    assert 55 <= refused.value.retry_after <= 61
    db.execute(
        "UPDATE auth_throttle SET expires_at = now() - interval '1 s'"
        " WHERE scope = 'test' AND key_hash = %s",
        (digest(key),),
    )
    assert throttle.purge(db) >= 1
    row = db.execute(
        "SELECT count(*) FROM auth_throttle WHERE scope = 'test' AND key_hash = %s",
        (digest(key),),
    ).fetchone()
    assert row is not None and row[0] == 0
