"""Bulk import of historical exports: each format against the real database.

Sample files in tests/ingest/data are hand-written in the vendors' layouts (see the
format modules' docstrings for the sources); expected UTC times are worked out by hand
from the patient's zone.  Each test uses its own patient ids: the database is shared by
the whole test session.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_profiles.model import MGDL_PER_MMOLL, Component, Condition, Kind
from ingest.bulk_import import build_chunk, import_file, parse_file, prepare
from ingest.importers import ImportFileError

pytestmark = pytest.mark.services
DATA = Path(__file__).parent / "data"
NY = "America/New_York"


@pytest.fixture()
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def stored(conn: Any, patient: str) -> list[tuple[Any, ...]]:
    """(utc, source, mgdl, conditions, device_time, original value, unit, device, gateway)."""
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT g.time, g.source, g.mgdl, g.conditions, g.device_time, g.original_value,"
        " g.original_unit, g.device_id, g.gateway_id FROM glucose g"
        " JOIN patients p ON p.id = g.patient_id WHERE p.external_id = %s"
        " ORDER BY g.time, g.source, g.mgdl",
        (patient,),
    ).fetchall()
    return rows


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def accounted(report: dict[str, Any]) -> bool:
    """Every row read is stored, a duplicate, skipped or dead-lettered."""
    return bool(
        report["rows_read"]
        == report["readings_stored"]
        + report["duplicates_skipped"]
        + report["rows_skipped"]
        + report["dead_lettered"]
    )


def test_dexcom_clarity_mgdl(conn: Any, database_url: str) -> None:
    path = DATA / "dexcom_clarity_mgdl.csv"
    report = import_file(database_url, path, "dexcom", "imp-dex-1", progress=False)
    assert report["patients_created"] == ["imp-dex-1"]
    assert report["devices"] == ["import:dexcom:8ABC12"]
    assert report["rows_read"] == 18
    assert report["readings_stored"] == 6
    assert report["rows_skipped"] == 12  # names, device, 7 alert settings, insulin, carbs
    assert report["skipped_by_reason"]["event type Alert"] == 7
    assert report["dead_lettered"] == 0
    assert accounted(report)
    dev = "import:dexcom:8ABC12"
    # 2024-03-05 is EST (UTC-5) in New York.
    assert stored(conn, "imp-dex-1") == [
        (
            utc(2024, 3, 5, 13, 0, 12),
            "cgm",
            112.0,
            [],
            "2024-03-05T08:00:12",
            112.0,
            "mg/dL",
            dev,
            None,
        ),
        (
            utc(2024, 3, 5, 13, 5, 12),
            "cgm",
            118.0,
            [],
            "2024-03-05T08:05:12",
            118.0,
            "mg/dL",
            dev,
            None,
        ),
        (
            utc(2024, 3, 5, 13, 10, 11),
            "cgm",
            None,
            ["result_below_range"],
            "2024-03-05T08:10:11",
            None,
            "mg/dL",
            dev,
            None,
        ),
        (
            utc(2024, 3, 5, 13, 15, 12),
            "cgm",
            None,
            ["result_above_range"],
            "2024-03-05T08:15:12",
            None,
            "mg/dL",
            dev,
            None,
        ),
        (
            utc(2024, 3, 5, 13, 18),
            "smbg",
            105.0,
            [],
            "2024-03-05T08:18:00",
            105.0,
            "mg/dL",
            dev,
            None,
        ),
        (
            utc(2024, 3, 5, 13, 20, 12),
            "cgm",
            131.0,
            [],
            "2024-03-05T08:20:12",
            131.0,
            "mg/dL",
            dev,
            None,
        ),
    ]
    device = conn.execute(
        "SELECT d.profile, d.manufacturer, d.serial, d.gateway_id, lower_inf(b.valid),"
        " upper_inf(b.valid) FROM devices d JOIN device_bindings b ON b.device_id = d.id"
        " WHERE d.id = %s",
        (dev,),
    ).fetchall()
    assert device == [("import-dexcom", "Dexcom", "8ABC12", None, True, True)]

    again = import_file(database_url, path, "dexcom", "imp-dex-1", progress=False)
    assert again["readings_stored"] == 0
    assert again["duplicates_skipped"] == 6
    assert again["patients_created"] == []
    assert len(stored(conn, "imp-dex-1")) == 6


def test_dexcom_clarity_mmol(conn: Any, database_url: str) -> None:
    report = import_file(
        database_url, DATA / "dexcom_clarity_mmol.csv", "dexcom", "imp-dex-mmol", progress=False
    )
    assert report["readings_stored"] == 3
    rows = stored(conn, "imp-dex-mmol")
    assert [(r[0], r[2], r[3], r[5], r[6]) for r in rows] == [
        (utc(2024, 3, 6, 14, 0, 5), pytest.approx(5.5 * MGDL_PER_MMOLL), [], 5.5, "mmol/L"),
        (utc(2024, 3, 6, 14, 5, 5), None, ["result_below_range"], None, "mmol/L"),
        (utc(2024, 3, 6, 14, 10, 5), pytest.approx(180.1559), [], 10.0, "mmol/L"),
    ]


def test_libreview_mgdl(conn: Any, database_url: str) -> None:
    path = DATA / "libreview_mgdl.csv"
    report = import_file(database_url, path, "libreview", "imp-lv-1", progress=False)
    serial = "5B0A3C6E-1F2D-4E8A-9C7B-2D4E6F8A0B1C"
    dev = f"import:libreview:{serial}"
    assert report["devices"] == [dev]
    assert report["rows_read"] == 9
    assert report["readings_stored"] == 7  # 4 historic, 2 scans in one minute, 1 strip
    assert report["skipped_by_reason"] == {"record type 4": 1, "record type 6": 1}
    assert report["timestamp_format"] == "%m-%d-%Y %I:%M %p"
    assert any("every day <= 12" in w for w in report["warnings"])  # 03-05: Mar 5 or May 3
    assert accounted(report)
    rows = [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in stored(conn, "imp-lv-1")]
    assert rows == [
        (utc(2024, 3, 5, 13, 0), "cgm", 105.0, [], "2024-03-05T08:00:00", 105.0),
        # The app's floor (40 mg/dL) is LO: the condition, no number; the export keeps it.
        (utc(2024, 3, 5, 13, 15), "cgm", None, ["result_below_range"], "2024-03-05T08:15:00", 40.0),
        (utc(2024, 3, 5, 13, 20), "smbg", 118.0, [], "2024-03-05T08:20:00", 118.0),
        (utc(2024, 3, 5, 13, 20), "smbg", 124.0, [], "2024-03-05T08:20:00", 124.0),
        (utc(2024, 3, 5, 13, 30), "cgm", 121.0, [], "2024-03-05T08:30:00", 121.0),
        (utc(2024, 3, 5, 14, 10), "smbg", 112.0, [], "2024-03-05T09:10:00", 112.0),
        (utc(2024, 3, 5, 18, 45), "cgm", 150.0, [], "2024-03-05T13:45:00", 150.0),  # 01:45 PM
    ]
    model = conn.execute("SELECT model, serial FROM devices WHERE id = %s", (dev,)).fetchone()
    assert model == ("FreeStyle Libre 3", serial)
    again = import_file(database_url, path, "libreview", "imp-lv-1", progress=False)
    assert (again["readings_stored"], again["duplicates_skipped"]) == (0, 7)


def test_libreview_mmol_day_first(conn: Any, database_url: str) -> None:
    report = import_file(
        database_url,
        DATA / "libreview_mmol.csv",
        "libreview",
        "imp-lv-mmol",
        timezone="Europe/London",
        progress=False,
    )
    assert report["timezones"] == ["Europe/London"]
    assert report["timestamp_format"] == "%d-%m-%Y %H:%M"  # 13-03-2024: day first
    assert report["warnings"] == []
    rows = [(r[0], r[1], r[2], r[3], r[5], r[6]) for r in stored(conn, "imp-lv-mmol")]
    # London is on GMT until 31 March 2024: local = UTC.
    assert rows == [
        (utc(2024, 3, 13, 8, 0), "cgm", pytest.approx(99.085745), [], 5.5, "mmol/L"),
        (utc(2024, 3, 13, 8, 15), "cgm", None, ["result_below_range"], 2.2, "mmol/L"),
        (utc(2024, 3, 13, 8, 30), "cgm", pytest.approx(180.1559), [], 10.0, "mmol/L"),
        (utc(2024, 3, 13, 8, 40), "smbg", pytest.approx(6.1 * MGDL_PER_MMOLL), [], 6.1, "mmol/L"),
    ]


def test_generic_two_patients(conn: Any, database_url: str) -> None:
    report = import_file(database_url, DATA / "generic.csv", "generic", None, progress=False)
    assert report["patients_created"] == ["imp-gen-a", "imp-gen-b"]
    assert report["readings_stored"] == 6
    a = [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in stored(conn, "imp-gen-a")]
    assert a == [
        (utc(2024, 2, 1, 12, 30), "smbg", 98.0, [], "2024-02-01T07:30:00", "mg/dL"),
        (
            utc(2024, 2, 1, 17, 0),
            "smbg",
            None,
            ["result_above_range"],
            "2024-02-01T12:00:00",
            "mg/dL",
        ),
        # An explicit offset is used as is (and kept as given).
        (utc(2024, 2, 1, 18, 0), "smbg", 140.0, [], "2024-02-01T18:00:00Z", "mg/dL"),
        (
            utc(2024, 2, 2, 12, 0),
            "smbg",
            pytest.approx(6.1 * MGDL_PER_MMOLL),
            [],
            "2024-02-02T07:00:00",
            "mmol/L",
        ),
    ]
    b = [(r[0], r[1], r[2], r[3]) for r in stored(conn, "imp-gen-b")]
    assert b == [
        (utc(2024, 2, 1, 13, 0), "cgm", None, ["result_below_range"]),
        (utc(2024, 2, 1, 13, 5), "cgm", 85.0, []),
    ]


def test_generic_dst_fall_back_and_spring_forward(conn: Any, database_url: str) -> None:
    report = import_file(database_url, DATA / "generic_dst.csv", "generic", None, progress=False)
    assert report["dst_adjusted"] == 2
    times = [(r[0], r[4]) for r in stored(conn, "imp-dst")]
    assert times == [
        # 2024-03-10 02:30 does not exist in New York: the offset before the jump (EST).
        (utc(2024, 3, 10, 7, 30), "2024-03-10T02:30:00"),
        (utc(2024, 11, 3, 4, 30), "2024-11-03T00:30:00"),  # EDT
        # 01:30 happens twice on 2024-11-03: fold=0, the first (EDT, UTC-4).
        (utc(2024, 11, 3, 5, 30), "2024-11-03T01:30:00"),
        (utc(2024, 11, 3, 7, 30), "2024-11-03T02:30:00"),  # EST
    ]
    zone = ZoneInfo(NY)
    expected = datetime(2024, 11, 3, 1, 30, tzinfo=zone, fold=0).astimezone(UTC)
    assert times[2][0] == expected


def test_malformed_rows_are_dead_lettered(conn: Any, database_url: str) -> None:
    path = DATA / "generic_malformed.csv"
    report = import_file(database_url, path, "generic", "imp-bad", progress=False)
    assert report["readings_stored"] == 2
    assert report["dead_lettered_by_reason"] == {
        "implausible glucose": 1,
        "invalid timestamp": 1,
        "missing glucose value": 1,
        "more fields than the header's": 1,
        "non-numeric glucose value": 1,
        "time before 2000-01-01": 1,
        "time in the future": 1,
    }
    assert report["dead_letters_written"] == 7
    assert accounted(report)
    letters = conn.execute(
        "SELECT reading_index, device_id, gateway_id, reason FROM dead_letters"
        " WHERE topic = 'import/generic/generic_malformed.csv' ORDER BY reading_index"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in letters] == [
        (line, "import:generic:imp-bad", None) for line in (3, 4, 5, 6, 7, 8, 9)
    ]
    reasons = [r[3] for r in letters]
    assert reasons[0] == "invalid timestamp '2024-02-31T07:00:00' (expected ISO 8601)"
    assert reasons[1] == "non-numeric glucose value 'abc'"
    assert reasons[2].startswith("implausible glucose 5000")
    assert reasons[3].endswith("is in the future")
    assert [r[0] for r in stored(conn, "imp-bad")] == [
        utc(2024, 2, 1, 12, 0),
        utc(2024, 2, 1, 12, 25),
    ]
    # A second import stores nothing and parks nothing again.
    again = import_file(database_url, path, "generic", "imp-bad", progress=False)
    assert (again["readings_stored"], again["duplicates_skipped"]) == (0, 2)
    assert (again["dead_lettered"], again["dead_letters_written"]) == (7, 0)


def test_refuses_a_source_bound_to_another_patient(database_url: str, tmp_path: Path) -> None:
    text = (DATA / "dexcom_clarity_mmol.csv").read_text(encoding="utf-8-sig")
    path = tmp_path / "owner.csv"
    path.write_text(text.replace("8MMOL1", "8OWNER"), encoding="utf-8-sig")
    import_file(database_url, path, "dexcom", "imp-owner", progress=False)
    with pytest.raises(ImportFileError, match="refusing"):
        import_file(database_url, path, "dexcom", "imp-other", progress=False)


def test_file_level_errors() -> None:
    with pytest.raises(ImportFileError, match="--patient"):
        parse_file(DATA / "dexcom_clarity_mgdl.csv", "dexcom", None)
    with pytest.raises(ImportFileError, match="not a LibreView export"):
        parse_file(DATA / "dexcom_clarity_mgdl.csv", "libreview", "p")
    with pytest.raises(ImportFileError, match="'id' column"):
        parse_file(DATA / "generic.csv", "generic", "p")
    with pytest.raises(ImportFileError, match="unknown format"):
        parse_file(DATA / "generic.csv", "carelink", "p")


# -- the generic parser as a property: any valid row becomes the reading it describes --

PATIENTS = st.sampled_from(["hp-a", "hp-b", "hp-c"])
WALL = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)
VALUE = st.one_of(
    st.tuples(st.integers(20, 600).map(float), st.just("mg/dL")),
    st.tuples(st.integers(11, 333).map(lambda v: v / 10), st.just("mmol/L")),
    st.tuples(st.sampled_from(["HI", "High", "LO", "low"]), st.just("mg/dL")),
)
ROWS = st.lists(
    st.tuples(PATIENTS, WALL, VALUE, st.sampled_from(["", "cgm", "glucose"]), st.booleans()),
    min_size=1,
    max_size=40,
)
ZONES = {"hp-a": NY, "hp-b": "Europe/Berlin", "hp-c": "Australia/Lord_Howe"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS)
def test_generic_rows_round_trip(
    rows: list[tuple[str, datetime, tuple[Any, str], str, bool]],
) -> None:
    with tempfile.TemporaryDirectory(prefix="hv_imp_") as tmp:
        path = Path(tmp) / "rows.csv"
        with path.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["id", "time", "glucose", "unit", "kind"])
            for patient, wall, (value, unit), kind, space in rows:
                stamp = wall.isoformat(sep=" " if space else "T")
                text = value if isinstance(value, str) else f"{value:g}"
                out.writerow([patient, stamp, text, unit, kind])
        parsed = parse_file(path, "generic", None)
        chunk = build_chunk(prepare(parsed, ZONES), 0, len(parsed.rows), "t")
    assert not chunk.rejected and not chunk.skipped
    assert len(chunk.readings) == len(rows)
    for reading, (patient, wall, (value, unit), kind, _) in zip(chunk.readings, rows, strict=True):
        assert reading.device == f"import:generic:{patient}"
        assert reading.kind is (Kind.CGM if kind == "cgm" else Kind.GLUCOSE)
        assert reading.device_time == wall.isoformat()
        local = wall.replace(tzinfo=ZoneInfo(ZONES[patient]), fold=0)
        assert reading.time == local.astimezone(UTC)
        assert reading.time.utcoffset() == timedelta(0)
        if isinstance(value, str):
            high = value.lower().startswith("h")
            want = Condition.RESULT_ABOVE_RANGE if high else Condition.RESULT_BELOW_RANGE
            assert reading.conditions == [want]
            assert reading.values == {}
        else:
            factor = MGDL_PER_MMOLL if unit == "mmol/L" else 1.0
            assert reading.values == {Component.GLUCOSE: pytest.approx(value * factor)}
            assert reading.original[Component.GLUCOSE].value == pytest.approx(value)
            assert reading.original[Component.GLUCOSE].unit == unit
    # Identities are unique per distinct row and stable across parses.
    distinct = {(p, w, str(v), u, k or "glucose") for p, w, (v, u), k, _ in rows}
    assert len({r.id for r in chunk.readings}) == len(distinct)
