"""Device-local time -> UTC: skew, device time offset, gateway zone and DST."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from readings import (
    device_time_text,
    device_time_to_utc,
    measure_skew,
    stable_skew,
    wall_to_utc,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def test_plain_conversion_in_winter_and_summer() -> None:
    assert wall_to_utc(datetime(2026, 1, 15, 8, 0), NEW_YORK) == datetime(
        2026, 1, 15, 13, 0, tzinfo=UTC
    )
    assert wall_to_utc(datetime(2026, 7, 15, 8, 0), NEW_YORK) == datetime(
        2026, 7, 15, 12, 0, tzinfo=UTC
    )


def test_ambiguous_time_is_the_first_occurrence() -> None:
    # 2026-11-01 01:30 happens twice in New York; fold=0 -> EDT (UTC-4).
    assert wall_to_utc(datetime(2026, 11, 1, 1, 30), NEW_YORK) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


def test_nonexistent_time_uses_the_offset_before_the_jump() -> None:
    # 2026-03-08 02:30 does not exist in New York; read with EST (UTC-5).
    assert wall_to_utc(datetime(2026, 3, 8, 2, 30), NEW_YORK) == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )
    # Europe: 2026-03-29 02:30 does not exist in Berlin; read with CET (UTC+1).
    assert wall_to_utc(datetime(2026, 3, 29, 2, 30), BERLIN) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )


def test_skew_is_device_minus_gateway() -> None:
    gateway_now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    device_now = datetime(2026, 5, 1, 17, 0)  # 14:00 in Berlin (UTC+2), 3 h fast
    assert measure_skew(device_now, gateway_now, BERLIN) == pytest.approx(3 * 3600)


def test_three_hour_skew_is_removed() -> None:
    # The device runs 3 h fast; a record stamped 14:00 on its clock was taken at 11:00.
    utc = device_time_to_utc(datetime(2026, 5, 1, 14, 0), zone=UTC_ZONE, skew_s=3 * 3600.0)
    assert utc == datetime(2026, 5, 1, 11, 0, tzinfo=UTC)


def test_device_time_offset_is_added_before_the_zone() -> None:
    utc = device_time_to_utc(
        datetime(2026, 1, 15, 8, 0), zone=NEW_YORK, offset_minutes=60, skew_s=-30.0
    )
    assert utc == datetime(2026, 1, 15, 14, 0, 30, tzinfo=UTC)


def test_unknown_skew_trusts_the_device_clock() -> None:
    utc = device_time_to_utc(datetime(2026, 1, 15, 8, 0), zone=BERLIN, skew_s=None)
    assert utc == datetime(2026, 1, 15, 7, 0, tzinfo=UTC)


def test_device_time_text_is_naive_iso() -> None:
    assert device_time_text(datetime(2026, 1, 15, 8, 0, 5)) == "2026-01-15T08:00:05"


UTC_ZONE = ZoneInfo("UTC")


def test_stable_skew_keeps_the_previous_value_within_tolerance() -> None:
    assert stable_skew(10799.6, None) == 10800.0
    assert stable_skew(10800.6, 10800.0) == 10800.0  # jitter: same UTC times on re-fetch
    assert stable_skew(10799.2, 10800.0) == 10800.0
    assert stable_skew(10820.0, 10800.0) == 10820.0  # a 20 s clock change is applied
    assert stable_skew(10900.0, 10800.0) == 10900.0  # a real change
    assert stable_skew(0.4, 10800.0) == 0.0  # the clock was set


def test_negligible_skew_is_zero() -> None:
    assert stable_skew(-0.7, None) == 0.0
    assert stable_skew(1.9, None) == 0.0
