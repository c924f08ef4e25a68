"""Hypothesis strategies producing *valid* characteristic bytes for every flag combination.

Imported by the round-trip tests; kept beside them (no package: tests/ has no __init__).
"""

from __future__ import annotations

import struct
from datetime import datetime

from hypothesis import strategies as st

from device_profiles.cgm import crc16_mcrf4xx

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
sfloat = u16.map(lambda v: struct.pack("<H", v))  # every word is valid (specials included)
float32 = st.integers(0, 0xFFFFFFFF).map(lambda v: struct.pack("<I", v))

datetimes = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


def _dt(d: datetime) -> bytes:
    return struct.pack("<HBBBBB", d.year, d.month, d.day, d.hour, d.minute, d.second)


date_time = st.one_of(datetimes.map(_dt), st.just(bytes(7)))


@st.composite
def glucose_measurement(draw: st.DrawFn) -> bytes:
    flags = draw(st.integers(0, 0x1F))
    out = bytes([flags]) + struct.pack("<H", draw(u16)) + draw(date_time)
    if flags & 0x01:
        out += struct.pack("<h", draw(st.integers(-0x8000, 0x7FFF)))
    if flags & 0x02:
        t = draw(st.integers(1, 10))
        loc = draw(st.sampled_from([1, 2, 3, 4, 15]))
        out += draw(sfloat) + bytes([t | loc << 4])
    if flags & 0x08:
        out += struct.pack("<H", draw(u16))
    return out


@st.composite
def glucose_context(draw: st.DrawFn) -> bytes:
    flags = draw(u8)
    out = bytes([flags]) + struct.pack("<H", draw(u16))
    if flags & 0x80:
        out += bytes([draw(u8)])
    if flags & 0x01:
        out += bytes([draw(st.integers(1, 7))]) + draw(sfloat)
    if flags & 0x02:
        out += bytes([draw(st.integers(1, 5))])
    if flags & 0x04:
        tester = draw(st.sampled_from([1, 2, 3, 15]))
        health = draw(st.sampled_from([1, 2, 3, 4, 5, 15]))
        out += bytes([tester | health << 4])
    if flags & 0x08:
        out += struct.pack("<HB", draw(u16), draw(st.integers(0, 100)))
    if flags & 0x10:
        out += bytes([draw(st.integers(1, 5))]) + draw(sfloat)
    if flags & 0x40:
        out += draw(sfloat)
    return out


@st.composite
def blood_pressure(draw: st.DrawFn) -> bytes:
    flags = draw(st.integers(0, 0x1F))
    out = bytes([flags]) + draw(sfloat) + draw(sfloat) + draw(sfloat)
    if flags & 0x02:
        out += draw(date_time)
    if flags & 0x04:
        out += draw(sfloat)
    if flags & 0x08:
        out += bytes([draw(u8)])
    if flags & 0x10:
        out += struct.pack("<H", draw(st.integers(0, 0x3F)))  # defined bits only
    return out


@st.composite
def racp(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["plain", "one", "range", "abort", "count", "code", "time"]))
    opcode = draw(st.sampled_from([1, 2, 4]))
    if kind == "plain":
        return bytes([opcode, draw(st.sampled_from([1, 5, 6]))])
    if kind == "one":
        return bytes([opcode, draw(st.sampled_from([2, 3])), 1]) + struct.pack("<H", draw(u16))
    if kind == "range":
        lo = draw(u16)
        return bytes([opcode, 4, 1]) + struct.pack("<HH", lo, draw(st.integers(lo, 0xFFFF)))
    if kind == "time":
        return bytes([opcode, 3, 2]) + _dt(draw(datetimes))
    if kind == "abort":
        return b"\x03\x00"
    if kind == "count":
        return b"\x05\x00" + struct.pack("<H", draw(u16))
    return bytes([6, 0, draw(u8), draw(st.integers(1, 9))])


@st.composite
def cgm_record(draw: st.DrawFn) -> bytes:
    flags = draw(st.sampled_from([0, 1, 2, 3])) | draw(st.sampled_from([0, 0x20, 0x40, 0x80, 0xE0]))
    body = draw(sfloat) + struct.pack("<H", draw(u16))
    for bit in (0x80, 0x40, 0x20):
        if flags & bit:
            body += bytes([draw(st.integers(1, 0xFF))])
    if flags & 0x01:
        body += draw(sfloat)
    if flags & 0x02:
        body += draw(sfloat)
    crc = draw(st.booleans())
    record = bytes([2 + len(body) + (2 if crc else 0), flags]) + body
    return record + struct.pack("<H", crc16_mcrf4xx(record)) if crc else record


cgm_measurement = st.lists(cgm_record(), min_size=1, max_size=3).map(b"".join)


def _with_crc(body: bytes, crc: bool) -> bytes:
    return body + struct.pack("<H", crc16_mcrf4xx(body)) if crc else body


tz = st.one_of(st.integers(-48, 56), st.just(-128)).map(lambda v: struct.pack("<b", v))
dst = st.sampled_from([0, 2, 4, 8, 255]).map(lambda v: bytes([v]))

cgm_status = st.builds(
    lambda t, s, c: _with_crc(struct.pack("<H", t) + s, c),
    u16,
    st.binary(min_size=3, max_size=3),
    st.booleans(),
)
cgm_session_start = st.builds(
    lambda d, z, o, c: _with_crc(d + z + o, c), date_time, tz, dst, st.booleans()
)


@st.composite
def cgm_feature(draw: st.DrawFn) -> bytes:
    features = draw(st.integers(0, 0x1FFFF))
    body = features.to_bytes(3, "little") + bytes(
        [draw(st.integers(1, 10)) | draw(st.sampled_from([1, 2, 3, 4, 5, 15])) << 4]
    )
    return _with_crc(body, True) if features & 0x1000 else body + b"\xff\xff"


@st.composite
def weight(draw: st.DrawFn) -> bytes:
    flags = draw(st.integers(0, 0x0F))
    out = bytes([flags]) + struct.pack("<H", draw(u16))
    if flags & 0x02:
        out += draw(date_time)
    if flags & 0x04:
        out += bytes([draw(u8)])
    if flags & 0x08:
        out += struct.pack("<HH", draw(u16), draw(u16))
    return out


@st.composite
def plx(draw: st.DrawFn) -> bytes:
    flags = draw(st.integers(0, 0x1F))
    out = bytes([flags]) + draw(sfloat) + draw(sfloat)
    if flags & 0x01:
        out += draw(date_time)
    if flags & 0x02:
        out += struct.pack("<H", draw(u16) & 0xFFE0)
    if flags & 0x04:
        out += draw(u16).to_bytes(2, "little") + b"\x00"
    if flags & 0x08:
        out += draw(sfloat)
    return out


@st.composite
def thermometer(draw: st.DrawFn) -> bytes:
    flags = draw(st.integers(0, 0x07))
    out = bytes([flags]) + draw(float32)
    if flags & 0x02:
        out += draw(date_time)
    if flags & 0x04:
        out += bytes([draw(st.integers(1, 9))])
    return out


current_time = st.builds(
    lambda d, w, f, r: d + bytes([w, f, r]), date_time, st.integers(0, 7), u8, st.integers(0, 0x0F)
)
local_time = st.builds(lambda z, o: z + o, tz, dst)
dis_string = st.text(max_size=20).filter(lambda s: "\x00" not in s).map(lambda s: s.encode())
battery = st.integers(0, 100).map(lambda v: bytes([v]))
feature16 = u16.map(lambda v: struct.pack("<H", v))


@st.composite
def weight_scale_feature(draw: st.DrawFn) -> bytes:
    """WSS §3.2.1: b0-b2 flags, b3-b6 weight resolution (0-7), b7-b9 height (0-3)."""
    flags = draw(st.integers(0, 7))
    weight_res = draw(st.integers(0, 7))
    height_res = draw(st.integers(0, 3))
    return struct.pack("<I", flags | weight_res << 3 | height_res << 7)


@st.composite
def plx_features(draw: st.DrawFn) -> bytes:
    """PLXS §3.3: supported features u16, then the measurement-status (u16) and the
    device-and-sensor-status (u24) support fields iff bits 0 and 1 say so."""
    supported = draw(u16)
    out = struct.pack("<H", supported)
    if supported & 0x0001:
        out += struct.pack("<H", draw(u16) & 0xFFE0)
    if supported & 0x0002:
        out += draw(u16).to_bytes(2, "little") + b"\x00"
    return out
