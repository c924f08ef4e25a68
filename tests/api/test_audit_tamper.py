"""The red team's attacks on the audit chain, run with the API's own database role (the
app role that owns the tables, not a superuser), each followed by ``homevitals audit
verify``.

Before migration 0013 every one of these left ``verify`` saying "intact"; the attacks
that need something the table owner cannot rewrite are run after ``homevitals audit
anchor`` has recorded the head in a file outside the database.

Each test tampers with a database of its own (the attacks commit, as a real attacker's
would).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from api.core import audit
from api.core.audit_chain import verify
from api.core.principal import Principal
from homevitals.cli import cli
from homevitals.services.postgres import LocalPostgres
from ingest.migrations import migrate

OPERATOR = Principal("admin", "mallory", 1, None)
BACKDATED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def own_db(
    local_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    url = local_postgres.create_database(f"hv_tamper_{uuid.uuid4().hex[:8]}")
    migrate(url)
    monkeypatch.setenv("HOMEVITALS_DATABASE_URL", url)
    monkeypatch.setenv("HOMEVITALS_STATE_DIR", str(tmp_path / "state"))
    yield url


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _write(url: str, n: int, tag: str = "legit") -> None:
    with _connect(url) as conn:
        for i in range(n):
            audit.write(conn, OPERATOR, "test.chain", ip="127.0.0.1", detail={"tag": tag, "i": i})


def _verify(*args: str) -> Result:
    return CliRunner().invoke(cli, ["audit", "verify", *args])


def _anchor(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["audit", "anchor", "--no-syslog", *args])
    assert result.exit_code == 0, result.output
    return result


def _owner_unlocks(conn: psycopg.Connection[Any]) -> None:
    """What the owner of the tables may always do: take back UPDATE/DELETE/TRUNCATE and
    switch off the append-only triggers."""
    conn.execute("GRANT UPDATE, DELETE, TRUNCATE ON audit_log TO CURRENT_USER")
    conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
    conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate")


def _point_head_at(conn: psycopg.Connection[Any], seq: int) -> None:
    """Set every column of the chain head to what it would hold had row ``seq`` been the
    last one written (whatever columns the head has)."""
    cols = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'audit_chain_head'"
        ).fetchall()
    }
    if seq == 0:
        conn.execute("UPDATE audit_chain_head SET seq = 0, hash = decode(repeat('00', 32), 'hex')")
        if "last_id" in cols:
            conn.execute("UPDATE audit_chain_head SET last_id = 0, at = '-infinity'")
        return
    conn.execute(
        "UPDATE audit_chain_head h SET seq = r.chain_seq, hash = r.row_hash FROM audit_log r"
        " WHERE r.chain_seq = %s",
        (seq,),
    )
    if "last_id" in cols:
        conn.execute(
            "UPDATE audit_chain_head h SET last_id = r.id, at = r.at FROM audit_log r"
            " WHERE r.chain_seq = %s",
            (seq,),
        )


def _ids_by_seq(url: str) -> list[int]:
    with _connect(url) as conn:
        return [int(r[0]) for r in conn.execute("SELECT id FROM audit_log ORDER BY chain_seq")]


# --- 1. a backdated forged row -------------------------------------------------------


def test_backdated_insert_gets_the_database_clock(own_db: str) -> None:
    """A plain INSERT naming its own time: the trigger overwrites ``at`` with the
    database's clock, so the forged read shows up now, not on 1 December."""
    _write(own_db, 5)
    with _connect(own_db) as conn:
        row = conn.execute(
            "INSERT INTO audit_log (at, actor, role, action, patient_id, resource, status)"
            " VALUES (%s, 'drzed', 'clinician', 'patient.read', 2, '/patients/2', 200)"
            " RETURNING at, (SELECT max(at) FROM audit_log)",
            (BACKDATED,),
        ).fetchone()
    assert row is not None
    assert row[0] != BACKDATED and row[0] > BACKDATED
    assert _verify().exit_code == 0


def test_backdated_row_chained_by_hand_is_caught(own_db: str) -> None:
    """The owner switches the chain trigger off and chains a backdated row by hand (the
    hash computed with the database's own canonical form): out of time order."""
    _write(own_db, 5)
    with _connect(own_db) as conn:
        _owner_unlocks(conn)
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_chain")
        conn.execute(
            "INSERT INTO audit_log (id, at, actor, role, action, patient_id, resource, status,"
            " chain_seq, prev_hash)"
            " OVERRIDING SYSTEM VALUE"
            " SELECT (SELECT max(id) + 1 FROM audit_log), %s, 'drzed', 'clinician',"
            " 'patient.read', 2, '/patients/2', 200, seq + 1, hash FROM audit_chain_head",
            (BACKDATED,),
        )
        conn.execute(
            "UPDATE audit_log SET row_hash = sha256(prev_hash || audit_canonical(audit_log))"
            " WHERE row_hash IS NULL"
        )
        last = conn.execute("SELECT max(chain_seq) FROM audit_log").fetchone()
        assert last is not None
        _point_head_at(conn, int(last[0]))
    result = _verify()
    assert result.exit_code == 1, result.output
    assert f"backdated: row {max(_ids_by_seq(own_db))} " in result.output


# --- 2. deleting a middle row and re-chaining the rest -------------------------------


def _delete_and_rechain(url: str, victim_seq: int) -> int:
    """Copy the rows from ``victim_seq`` on, delete them, point the head at the row
    before, and re-insert the copies (same ids) but the victim, the trigger re-hashing
    them.  Returns the victim's id."""
    with _connect(url) as conn:
        _owner_unlocks(conn)
        victim = conn.execute(
            "SELECT id FROM audit_log WHERE chain_seq = %s", (victim_seq,)
        ).fetchone()
        assert victim is not None
        conn.execute(
            "CREATE TEMP TABLE saved AS SELECT * FROM audit_log WHERE chain_seq >= %s",
            (victim_seq,),
        )
        conn.execute("DELETE FROM audit_log WHERE chain_seq >= %s", (victim_seq,))
        _point_head_at(conn, victim_seq - 1)
        conn.execute(
            "INSERT INTO audit_log (id, at, actor, actor_id, role, action, patient_id,"
            " resource, client_ip, status, detail) OVERRIDING SYSTEM VALUE"
            " SELECT id, at, actor, actor_id, role, action, patient_id, resource, client_ip,"
            " status, detail FROM saved WHERE chain_seq <> %s ORDER BY chain_seq",
            (victim_seq,),
        )
    return int(victim[0])


def test_delete_and_rechain_without_an_anchor_goes_unseen(own_db: str) -> None:
    """The limit of an in-database chain: its owner can rewrite it consistently."""
    _write(own_db, 70)
    _delete_and_rechain(own_db, 60)
    assert _verify().exit_code == 0


def test_delete_and_rechain_after_an_anchor_is_caught(own_db: str) -> None:
    _write(own_db, 70)
    _anchor()
    _write(own_db, 3)
    _delete_and_rechain(own_db, 60)
    result = _verify()
    assert result.exit_code == 1, result.output
    assert "rewritten: chain position 70 no longer has the hash anchored" in result.output


def test_delete_and_rechain_by_hand_keeping_ids_is_caught(own_db: str) -> None:
    """The same with the chain trigger off, every later row keeping its id and time and
    re-hashed by hand: the ids, handed out one by one, now have a hole."""
    _write(own_db, 70)
    with _connect(own_db) as conn:
        _owner_unlocks(conn)
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_chain")
        victim = conn.execute("SELECT id FROM audit_log WHERE chain_seq = 60").fetchone()
        assert victim is not None
        conn.execute("DELETE FROM audit_log WHERE chain_seq = 60")
        conn.execute("DROP INDEX audit_log_chain_seq")
        conn.execute(
            "DO $$ DECLARE r audit_log; prev bytea; BEGIN"
            " SELECT row_hash INTO prev FROM audit_log WHERE chain_seq = 59;"
            " FOR r IN SELECT * FROM audit_log WHERE chain_seq > 60 ORDER BY chain_seq LOOP"
            "  r.chain_seq := r.chain_seq - 1; r.prev_hash := prev;"
            "  r.row_hash := sha256(prev || audit_canonical(r));"
            "  UPDATE audit_log SET chain_seq = r.chain_seq, prev_hash = r.prev_hash,"
            "   row_hash = r.row_hash WHERE id = r.id;"
            "  prev := r.row_hash;"
            " END LOOP; END $$"
        )
        _point_head_at(conn, 69)
    result = _verify()
    assert result.exit_code == 1, result.output
    assert f"deleted: row id(s) {victim[0]}..{victim[0]} missing" in result.output


# --- 3. cutting the newest rows --------------------------------------------------------


def test_tail_cut_after_an_anchor_is_caught(own_db: str, tmp_path: Path) -> None:
    _write(own_db, 20)
    anchors = tmp_path / "off-host" / "anchors.jsonl"
    _anchor("--to", str(anchors))
    with _connect(own_db) as conn:
        _owner_unlocks(conn)
        conn.execute("DELETE FROM audit_log WHERE chain_seq > 15")
        _point_head_at(conn, 15)
    assert _verify().exit_code == 0  # without the anchor file: nothing to compare to
    result = _verify("--anchors", str(anchors))
    assert result.exit_code == 1, result.output
    assert "truncated: the chain ends at position 15 but position 20 was anchored" in (
        result.output
    )


# --- 4. wiping the table ---------------------------------------------------------------


def test_truncate_after_an_anchor_is_caught(own_db: str) -> None:
    _write(own_db, 8)
    _anchor()
    with _connect(own_db) as conn:
        _owner_unlocks(conn)
        conn.execute("TRUNCATE audit_log")
        _point_head_at(conn, 0)
    result = _verify()
    assert result.exit_code == 1, result.output
    assert "truncated: the chain ends at position 0 but position 8 was anchored" in (result.output)


# --- 5. the id is hashed ---------------------------------------------------------------


def test_changed_id_is_caught(own_db: str) -> None:
    _write(own_db, 6)
    with _connect(own_db) as conn:
        _owner_unlocks(conn)
        conn.execute("ALTER TABLE audit_log ALTER COLUMN id SET GENERATED BY DEFAULT")
        conn.execute("UPDATE audit_log SET id = id + 1000 WHERE chain_seq = 3")
    result = _verify()
    assert result.exit_code == 1, result.output
    assert "edited: row " in result.output and "(position 3)" in result.output


# --- the anchor itself ------------------------------------------------------------------


def test_anchor_records_the_head_outside_the_database(own_db: str, tmp_path: Path) -> None:
    _write(own_db, 4)
    out = _anchor()
    anchors = tmp_path / "state" / "audit-anchors.jsonl"
    lines = anchors.read_text().splitlines()
    assert len(lines) == 1
    anchor = json.loads(lines[0])
    assert anchor["seq"] == 4 and len(bytes.fromhex(anchor["hash"])) == 32
    assert anchor["strict_from"] == 1
    assert lines[0] in out.output
    _write(own_db, 2)
    _anchor()
    assert len(anchors.read_text().splitlines()) == 2
    ok = _verify()
    assert ok.exit_code == 0 and "2 anchor(s) hold" in ok.output


def test_moving_the_strict_boundary_after_an_anchor_is_caught(own_db: str) -> None:
    """Raising the head's strict_from would exempt a hand-chained backdated row from the
    time check; the anchor recorded where it was."""
    _write(own_db, 3)
    _anchor()
    with _connect(own_db) as conn:
        conn.execute("UPDATE audit_chain_head SET strict_from = 100")
    result = _verify()
    assert result.exit_code == 1, result.output
    assert "strict_from moved from position 1" in result.output


def test_anchor_refuses_a_broken_chain(own_db: str, tmp_path: Path) -> None:
    _write(own_db, 4)
    with _connect(own_db) as conn:
        _owner_unlocks(conn)
        conn.execute("UPDATE audit_log SET actor = 'x' WHERE chain_seq = 2")
    result = CliRunner().invoke(cli, ["audit", "anchor", "--no-syslog"])
    assert result.exit_code == 1
    assert not (tmp_path / "state" / "audit-anchors.jsonl").exists()


# --- legitimate writers -----------------------------------------------------------------


def test_eight_concurrent_writers_keep_one_valid_chain(own_db: str) -> None:
    def worker(k: int) -> None:
        _write(own_db, 30, f"worker-{k}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with _connect(own_db) as conn:
        report = verify(conn)
        rows = conn.execute("SELECT chain_seq, id, at FROM audit_log ORDER BY chain_seq").fetchall()
    assert report.ok, report.findings
    assert [r[0] for r in rows] == list(range(1, 241))
    ids = [r[1] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 240
    ats = [r[2] for r in rows]
    assert ats == sorted(ats)


# --- migration 0013 ---------------------------------------------------------------------


def _legacy_db(local_postgres: LocalPostgres) -> str:
    """A database at migration 0012 holding rows chained the 0009 way, one of them
    backdated by its writer (as 0009 allowed) and one with an id far ahead."""
    url = local_postgres.create_database(f"hv_audit_v1_{uuid.uuid4().hex[:6]}")
    migrate(url, upto=12)
    _write(url, 4, "old")
    with _connect(url) as conn:
        conn.execute(
            "INSERT INTO audit_log (id, at, actor, role, action) OVERRIDING SYSTEM VALUE"
            " VALUES (500, %s, 'drzed', 'clinician', 'patient.read')",
            (BACKDATED,),
        )
    _write(url, 2, "old")
    return url


def test_migration_rehashes_the_existing_chain(local_postgres: LocalPostgres) -> None:
    url = _legacy_db(local_postgres)
    with _connect(url) as conn:
        old = conn.execute("SELECT id, at FROM audit_log ORDER BY chain_seq").fetchall()
    assert 13 in migrate(url)
    _write(url, 3, "new")
    with _connect(url) as conn:
        report = verify(conn)
        rows = conn.execute("SELECT id, at, chain_seq FROM audit_log ORDER BY chain_seq").fetchall()
        head = conn.execute("SELECT strict_from, last_id FROM audit_chain_head").fetchone()
    assert report.ok, report.findings
    assert report.rows == 10 and head is not None and head[0] == 8
    # History keeps its ids and times (the backdated one too: 0009 let writers set it);
    # the new rows are numbered and dated by the trigger after all of them.
    assert [(r[0], r[1]) for r in rows[:7]] == [(r[0], r[1]) for r in old]
    assert [r[0] for r in rows[7:]] == [501, 502, 503] and head[1] == 503
    assert all(r[1] >= max(o[1] for o in old) for r in rows[7:])


def test_migration_refuses_to_rehash_a_broken_chain(
    local_postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-hashing a chain that is already broken would launder the tampering."""
    url = _legacy_db(local_postgres)
    with _connect(url) as conn:
        _owner_unlocks(conn)
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE chain_seq = 2")
    with pytest.raises(psycopg.errors.RaiseException, match="already broken at chain position 2"):
        migrate(url)
    with _connect(url) as conn:
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
    monkeypatch.setenv("PGOPTIONS", "-c homevitals.audit_rechain_broken=on")
    assert 13 in migrate(url)
    with _connect(url) as conn:
        assert verify(conn).ok
