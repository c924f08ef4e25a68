"""Validation of the fields the database would refuse or store wrapped, and the batch
conversion of reading ids to binary uuids (property-based)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from device_profiles.model import Component, Kind
from ingest.columns import SEQUENCE_RANGE, USER_ID_RANGE, Flat, Origin, uuid_bytes, validate
from readings import wire

NOW = datetime(2026, 11, 1, tzinfo=UTC)
DEVICE = "dev-columns"
CANONICAL = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def reading(**overrides: object) -> wire.Reading:
    fields: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "device": DEVICE,
        "kind": Kind.GLUCOSE,
        "time": datetime(2026, 10, 1, tzinfo=UTC),
        "values": {Component.GLUCOSE: 100.0},
        **overrides,
    }
    return wire.Reading(**fields)  # type: ignore[arg-type]


def verdicts(*readings: wire.Reading, nul: bool = False) -> list[str | None]:
    """The rejection reason of each reading (None: accepted)."""
    flat = Flat()
    flat.add(Origin("t", "gw", nul), list(readings))
    split = validate(flat, {DEVICE}, NOW)
    reasons: list[str | None] = [None] * len(readings)
    for r in split.rejected:
        assert r.index is not None
        reasons[r.index] = r.reason
    return reasons


@given(st.lists(st.uuids(), max_size=50))
def test_uuid_bytes_are_the_uuids_bytes(ids: list[uuid.UUID]) -> None:
    texts = [str(u).upper() if u.int % 2 else str(u) for u in ids]  # either case
    assert uuid_bytes(texts) == [u.bytes for u in ids]


@given(st.text(max_size=40))
def test_only_canonical_uuid_text_is_a_reading_id(text: str) -> None:
    [verdict] = verdicts(reading(id=text))
    if CANONICAL.fullmatch(text):
        assert verdict is None
    else:
        assert verdict is not None and "is not a UUID" in verdict


_ASCII36 = st.text(alphabet="0123456789abcdefABCDEF-xg ", min_size=36, max_size=36)


@given(st.lists(st.one_of(st.uuids().map(str), _ASCII36), min_size=1, max_size=30))
def test_a_batch_of_ids_is_judged_id_by_id(ids: list[str]) -> None:
    """The batch check (one pass over all ids) agrees with the regex for every id."""
    reasons = verdicts(*(reading(id=i) for i in ids))
    assert [r is None for r in reasons] == [CANONICAL.fullmatch(i) is not None for i in ids]


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_sequence_numbers_fit_their_int4_column(seq: int) -> None:
    [verdict] = verdicts(reading(seq=seq))
    if SEQUENCE_RANGE[0] <= seq <= SEQUENCE_RANGE[1]:
        assert verdict is None
    else:
        assert verdict == f"sequence number {seq} is out of range (0..2147483647)"


@given(st.one_of(st.integers(-1000, 70000), st.booleans(), st.text(max_size=3), st.none()))
def test_bp_user_id_is_a_uint8_or_absent(user: int | bool | str | None) -> None:
    [verdict] = verdicts(
        reading(
            kind=Kind.BLOOD_PRESSURE,
            values={Component.SYSTOLIC: 120.0, Component.DIASTOLIC: 80.0},
            details={"user_id": user},
        )
    )
    fine = user is None or (
        isinstance(user, int)
        and not isinstance(user, bool)
        and USER_ID_RANGE[0] <= user <= USER_ID_RANGE[1]
    )
    assert (verdict is None) == fine, verdict


@given(st.floats())
def test_clock_skew_must_be_finite(skew: float) -> None:
    [verdict] = verdicts(reading(skew_s=skew))
    assert (verdict is None) == math.isfinite(skew), verdict


def test_nul_in_any_text_field_is_rejected_when_the_payload_had_one() -> None:
    nul = "a\x00b"
    spoiled = [
        reading(device_time=nul),
        reading(details={nul: 1}),
        reading(details={"note": nul}),
        reading(original={Component.GLUCOSE: wire.Original(5.5, nul)}),
    ]
    clean = reading(details={"note": "fine"})
    reasons = verdicts(*spoiled, clean, nul=True)
    assert all(r is not None and "NUL character" in r for r in reasons[:-1]), reasons
    assert reasons[-1] is None
