"""The audit log's hash chain (migration 0009): concurrent writers keep one chain, and
``homevitals audit verify`` names an edited, deleted or inserted row.

The attacker here owns the tables (the app role the API and migrations use): they can
grant themselves UPDATE/DELETE back and switch the append-only triggers off.  Each
tampering runs in a transaction that is rolled back, so the shared test database stays
intact; the CLI test tampers with a database of its own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from api.core import audit
from api.core.audit_chain import verify
from api.core.principal import Principal
from homevitals.cli import cli
from homevitals.services.postgres import LocalPostgres
from ingest.migrations import migrate

OPERATOR = Principal("admin", "mallory", 1, None)


def _write(conn: psycopg.Connection[Any], n: int, tag: str) -> None:
    for i in range(n):
        audit.write(conn, OPERATOR, "test.chain", ip="127.0.0.1", detail={"tag": tag, "i": i})


@pytest.fixture
def tamper(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose changes are rolled back, with the append-only guards off."""
    with psycopg.connect(database_url) as conn:
        _write(conn, 5, "tamper")
        conn.execute("GRANT UPDATE, DELETE ON audit_log TO CURRENT_USER")
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        try:
            yield conn
        finally:
            conn.rollback()


def _last_ids(conn: psycopg.Connection[Any], n: int) -> list[int]:
    rows = conn.execute("SELECT id FROM audit_log ORDER BY chain_seq DESC LIMIT %s", (n,))
    return [int(r[0]) for r in rows.fetchall()][::-1]


def test_concurrent_writers_keep_one_chain(database_url: str) -> None:
    """8 connections x 40 rows at once (as API workers would): one unbroken chain."""

    def worker(k: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            _write(conn, 40, f"worker-{k}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = verify(conn)
        seqs = conn.execute("SELECT chain_seq FROM audit_log ORDER BY chain_seq").fetchall()
    assert report.ok, report.findings
    assert [s[0] for s in seqs] == list(range(1, len(seqs) + 1))
    assert report.head_seq == len(seqs) == report.rows


def test_client_supplied_chain_values_are_overwritten(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "INSERT INTO audit_log (actor, role, action, chain_seq, prev_hash, row_hash)"
        " VALUES ('x', 'admin', 'test.forge', 1, '\\x00', '\\x00') RETURNING chain_seq, row_hash"
    ).fetchone()
    assert row is not None and row[0] > 1 and len(row[1]) == 32
    assert verify(db).ok


def test_edited_row_is_named(tamper: psycopg.Connection[Any]) -> None:
    victim = _last_ids(tamper, 3)[0]
    tamper.execute("UPDATE audit_log SET actor = 'someone-else' WHERE id = %s", (victim,))
    findings = verify(tamper).findings
    assert [(f.kind, f.row_id) for f in findings] == [("edited", victim)]


def test_edited_detail_is_named(tamper: psycopg.Connection[Any]) -> None:
    victim = _last_ids(tamper, 2)[0]
    tamper.execute("UPDATE audit_log SET detail = detail || '{\"i\": 99}' WHERE id = %s", (victim,))
    assert [(f.kind, f.row_id) for f in verify(tamper).findings] == [("edited", victim)]


def test_deleted_row_is_named(tamper: psycopg.Connection[Any]) -> None:
    before, victim, after = _last_ids(tamper, 4)[:3]
    seq = tamper.execute("SELECT chain_seq FROM audit_log WHERE id = %s", (victim,)).fetchone()
    tamper.execute("DELETE FROM audit_log WHERE id = %s", (victim,))
    findings = verify(tamper).findings
    assert [(f.kind, f.row_id) for f in findings] == [("deleted", after)]
    assert seq is not None and f"between chain positions {seq[0] - 1} and {seq[0] + 1}" in (
        findings[0].message
    )
    assert before != after


def test_deleted_tail_is_named(tamper: psycopg.Connection[Any]) -> None:
    last = _last_ids(tamper, 2)
    tamper.execute("DELETE FROM audit_log WHERE id = ANY(%s)", (last,))
    findings = verify(tamper).findings
    assert [f.kind for f in findings] == ["deleted"]
    assert "2 row(s) deleted from the end" in findings[0].message


def test_inserted_rows_are_named(tamper: psycopg.Connection[Any]) -> None:
    # With the chain trigger off, a plain insert lands outside the chain ...
    outside = tamper.execute(
        "INSERT INTO audit_log (actor, role, action) VALUES ('ghost', 'admin', 'auth.login')"
        " RETURNING id"
    ).fetchone()
    # ... one that copies a real row's position is refused by the unique index ...
    copy = (
        "INSERT INTO audit_log (actor, role, action, chain_seq, prev_hash, row_hash)"
        " SELECT 'ghost', role, action, chain_seq, prev_hash, row_hash FROM audit_log"
        " WHERE id = %s RETURNING id"
    )
    source = _last_ids(tamper, 3)[0]
    with pytest.raises(psycopg.errors.UniqueViolation), tamper.transaction():
        tamper.execute(copy, (source,))
    # ... and, with the index dropped too, caught by verify.
    tamper.execute("DROP INDEX audit_log_chain_seq")
    copied = tamper.execute(copy, (source,)).fetchone()
    assert outside is not None and copied is not None
    found = {(f.kind, f.row_id) for f in verify(tamper).findings}
    assert ("inserted", outside[0]) in found
    assert ("inserted", copied[0]) in found or ("edited", copied[0]) in found


def test_rechained_tail_is_caught_by_the_head(tamper: psycopg.Connection[Any]) -> None:
    """Rewriting the last row *and* its hash: the head still holds the old hash."""
    last = _last_ids(tamper, 1)[0]
    tamper.execute("UPDATE audit_log SET actor = 'x' WHERE id = %s", (last,))
    tamper.execute(
        "UPDATE audit_log SET row_hash = sha256(prev_hash || audit_canonical(audit_log))"
        " WHERE id = %s",
        (last,),
    )
    findings = verify(tamper).findings
    assert [f.kind for f in findings] == ["inserted"]


@pytest.fixture(scope="module")
def own_database(local_postgres: LocalPostgres) -> str:
    url = local_postgres.create_database(f"hv_audit_{uuid.uuid4().hex[:6]}")
    migrate(url)
    return url


def test_cli_audit_verify(own_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEVITALS_DATABASE_URL", own_database)
    with psycopg.connect(own_database, autocommit=True) as conn:
        _write(conn, 6, "cli")
        victim = _last_ids(conn, 4)[0]
    runner = CliRunner()
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "audit log intact: 6 rows" in intact.output

    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute("GRANT UPDATE ON audit_log TO CURRENT_USER")
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET status = 200, action = 'noop' WHERE id = %s", (victim,))
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1
    assert f"edited: row {victim} " in broken.output


def test_migration_chains_the_rows_written_before_it(local_postgres: LocalPostgres) -> None:
    """A database audited before 0009: the migration chains its rows in id order."""
    from ingest.migrations import available

    url = local_postgres.create_database(f"hv_audit_old_{uuid.uuid4().hex[:6]}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in available():
            if m.version >= 9:
                continue
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (m.version, m.name),
                )
        for i in range(7):
            conn.execute(
                "INSERT INTO audit_log (actor, role, action, detail) VALUES (%s, 'admin',"
                " 'old.row', %s)",
                (f"old-{i}", f'{{"i": {i}, "text": "caf\u00e9"}}'),
            )
    assert 9 in migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        _write(conn, 2, "after")
        report = verify(conn)
        order = conn.execute("SELECT actor FROM audit_log ORDER BY chain_seq").fetchall()
    assert report.ok, report.findings
    assert report.rows == 9
    assert [r[0] for r in order[:7]] == [f"old-{i}" for i in range(7)]
