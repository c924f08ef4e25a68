"""Parse throughput of the device_profiles decoders against a naive baseline.

The baseline is the style many hobby parsers use: ``struct.unpack(fmt, data[a:b])`` per
field (format re-parsed on every call, slices copied), SFLOAT by float arithmetic,
result as a plain dict, no bounds checks, no validation, no special values.  It is a
floor for "what the bytes cost", so the ratio shows what validation, exact decimal
scaling and the frozen Measurement cost on top.

Run: ``.venv/bin/python benchmarks/bench_parse.py [records]``
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from device_profiles.blood_pressure import (
    encode_blood_pressure_measurement,
    parse_blood_pressure_measurement,
)
from device_profiles.glucose import (
    SampleType,
    encode_glucose_measurement,
    glucose_measurement,
    parse_glucose_measurement,
)
from device_profiles.model import Component, Kind, Measurement, Quantity


def _naive_sfloat(raw: int) -> float:
    mantissa = raw & 0x0FFF
    exponent = raw >> 12
    if mantissa >= 0x0800:
        mantissa -= 0x1000
    if exponent >= 0x8:
        exponent -= 0x10
    return mantissa * 10.0**exponent


def naive_glucose(data: bytes) -> dict[str, object]:
    flags = struct.unpack("<B", data[0:1])[0]
    seq = struct.unpack("<H", data[1:3])[0]
    y, mo, d, h, mi, s = struct.unpack("<HBBBBB", data[3:10])
    out: dict[str, object] = {"seq": seq, "time": datetime(y, mo, d, h, mi, s)}
    off = 10
    if flags & 1:
        out["offset"] = struct.unpack("<h", data[off : off + 2])[0]
        off += 2
    if flags & 2:
        raw = struct.unpack("<H", data[off : off + 2])[0]
        out["mgdl"] = _naive_sfloat(raw) * 100000
        out["type"] = data[off + 2] & 0x0F
        out["location"] = data[off + 2] >> 4
        off += 3
    if flags & 8:
        out["status"] = struct.unpack("<H", data[off : off + 2])[0]
    return out


def naive_bp(data: bytes) -> dict[str, object]:
    flags = struct.unpack("<B", data[0:1])[0]
    sys_, dia, mean = (_naive_sfloat(v) for v in struct.unpack("<HHH", data[1:7]))
    out: dict[str, object] = {"sys": sys_, "dia": dia, "map": mean}
    off = 7
    if flags & 2:
        y, mo, d, h, mi, s = struct.unpack("<HBBBBB", data[off : off + 7])
        out["time"] = datetime(y, mo, d, h, mi, s)
        off += 7
    if flags & 4:
        out["pulse"] = _naive_sfloat(struct.unpack("<H", data[off : off + 2])[0])
        off += 2
    if flags & 8:
        out["user"] = data[off]
        off += 1
    if flags & 16:
        out["status"] = struct.unpack("<H", data[off : off + 2])[0]
    return out


def glucose_payloads(n: int, rng: random.Random) -> list[bytes]:
    return [
        encode_glucose_measurement(
            glucose_measurement(
                sequence=i % 65536,
                device_time=datetime(2024, 1 + i % 12, 1 + i % 28, i % 24, i % 60),
                mg_dl=float(rng.randint(40, 400)),
                sample_type=SampleType.CAPILLARY_PLASMA,
                time_offset_minutes=0,
            )
        )
        for i in range(n)
    ]


def bp_payloads(n: int, rng: random.Random) -> list[bytes]:
    def mmhg(v: float) -> Quantity:
        return Quantity(v, "mm[Hg]", v, "mm[Hg]")

    out = []
    for i in range(n):
        s, d, p = rng.randint(95, 180), rng.randint(55, 110), rng.randint(50, 110)
        m = Measurement(
            kind=Kind.BLOOD_PRESSURE,
            values={
                Component.SYSTOLIC: mmhg(float(s)),
                Component.DIASTOLIC: mmhg(float(d)),
                Component.MEAN_ARTERIAL: mmhg(float((s + 2 * d) // 3)),
                Component.PULSE: Quantity(float(p), "/min", float(p), "/min"),
            },
            device_time=datetime(2024, 1 + i % 12, 1 + i % 28, i % 24, i % 60),
            details={"units": "mmHg", "intermediate": False, "user_id": 1},
        )
        out.append(encode_blood_pressure_measurement(m))
    return out


def rate(parse: Callable[[bytes], object], payloads: Sequence[bytes], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for data in payloads:
            parse(data)
        best = min(best, time.perf_counter() - start)
    return len(payloads) / best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    rng = random.Random(20240315)
    print(f"{n} records per run, best of 5, Python {sys.version.split()[0]}")
    print(f"{'characteristic':<28}{'device_profiles':>18}{'naive baseline':>18}{'ratio':>8}")
    for name, payloads, ours, naive in (
        (
            "Glucose Measurement 0x2A18",
            glucose_payloads(n, rng),
            parse_glucose_measurement,
            naive_glucose,
        ),
        ("BP Measurement 0x2A35", bp_payloads(n, rng), parse_blood_pressure_measurement, naive_bp),
    ):
        r_ours, r_naive = rate(ours, payloads), rate(naive, payloads)
        print(f"{name:<28}{r_ours:>14,.0f} r/s{r_naive:>14,.0f} r/s{r_ours / r_naive:>7.2f}x")


if __name__ == "__main__":
    main()
