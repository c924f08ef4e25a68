"""Parsers of historical glucose exports, one module per format, into one column table.

Each format module (``generic``, ``dexcom``, ``libreview``) turns a file into a
:class:`Parsed`: one row per data line of the file, as pandas columns, with no database
access.  Parsing is vectorized (``pd.read_csv`` with every field as text, then
``to_datetime`` with explicit formats and ``to_numeric(errors="coerce")``); a row that
cannot be a reading carries its reason in ``error`` (it is dead-lettered), a row that is
not a glucose reading at all (insulin, notes, alert settings) carries its reason in
``skip``.  ``ingest.bulk_import`` turns the rows into wire ``Reading``s and writes them
through the ingest validation and write path.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from device_profiles.model import Condition, Kind


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (wrong format, missing columns, patient)."""


UNIT_MGDL: Final = "mg/dL"  # UCUM, as in Reading.original
UNIT_MMOLL: Final = "mmol/L"
# Out-of-range words a CGM export writes instead of a number (Dexcom: "Low" / "High").
LOW_WORDS: Final = frozenset({"low", "lo"})
HIGH_WORDS: Final = frozenset({"high", "hi"})
# Columns of ``Parsed.rows``.
ROW_COLUMNS: Final = (
    "line",  # 1-based line of the file (assumes no quoted multi-line fields)
    "patient",  # patient external id
    "device",  # import device id, e.g. "import:dexcom:8ABC12"
    "kind",  # Kind value: "cgm" or "glucose"
    "record_type",  # RecordType value where not the kind's usual one (a scan), else None
    "local",  # naive local wall time (datetime64), NaT if none
    "utc",  # time given with an explicit offset (generic CSV only), else NaT
    "device_time",  # the export's time as ISO text (local, no zone) or as given
    "value",  # the number as exported, in ``unit``; NaN if none
    "unit",  # UNIT_MGDL or UNIT_MMOLL
    "condition",  # "" or a Condition value (HI/LO)
    "error",  # dead-letter reason, or None
    "skip",  # not a glucose reading: why, or None
)


@dataclass(frozen=True, slots=True)
class ImportDevice:
    """What the ``devices`` table records about an import source."""

    id: str
    patient: str
    profile: str
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None


@dataclass(slots=True)
class Parsed:
    """A file as columns: ``rows`` (ROW_COLUMNS) and the raw text of each row."""

    fmt: str
    rows: pd.DataFrame
    raw: pd.DataFrame  # every field as read (header columns, then EXTRA_PREFIX spares)
    devices: dict[str, ImportDevice]
    timestamp_format: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Table:
    """The data lines of a file, every field as text (missing fields as NaN)."""

    frame: pd.DataFrame
    first_line: int  # file line of frame row 0 (1-based)
    columns: list[str]  # the header's column names (``frame`` may have extra columns)


def encoding_of(path: Path) -> str:
    head = path.open("rb").read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # older LibreView exports were UTF-16 with a BOM
    return "utf-8-sig"  # Clarity writes a UTF-8 BOM; harmless without one


def head_lines(path: Path, encoding: str, n: int = 64) -> list[str]:
    out: list[str] = []
    with path.open(encoding=encoding, newline="") as handle:
        for line in handle:
            out.append(line.rstrip("\r\n"))
            if len(out) >= n:
                break
    return out


def split_header(line: str) -> tuple[str, list[str]]:
    """The delimiter of a header line (the most frequent of , ; tab) and its fields."""
    sep = max((",", ";", "\t"), key=line.count)
    return sep, [name.strip() for name in next(csv.reader([line], delimiter=sep))]


EXTRA_COLUMNS = 8
EXTRA_PREFIX: Final = "\x00extra"


def read_table(path: Path, encoding: str, header_index: int) -> Table:
    """Every line after the header line ``header_index`` (0-based) as text columns.

    Read with explicit column names plus a few spare ones, so a row with more fields than
    the header is kept (and dead-lettered by the caller) instead of failing the read;
    blank lines are kept too, so frame row ``i`` is file line ``header_index + 2 + i``.
    """
    sep, columns = split_header(head_lines(path, encoding, header_index + 1)[header_index])
    spare = [f"{EXTRA_PREFIX}{i}" for i in range(EXTRA_COLUMNS)]
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            header=None,
            names=[*columns, *spare],
            skiprows=header_index + 1,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            index_col=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path.name}: cannot read as CSV: {exc}") from exc
    return Table(frame, header_index + 2, columns)


def read_export(path: Path, is_header: Callable[[list[str]], bool], not_found: str) -> Table:
    """A vendor export's data lines, below the first of its first lines whose fields
    ``is_header`` accepts (vendors write title and patient lines above the header)."""
    encoding = encoding_of(path)
    for index, line in enumerate(head_lines(path, encoding)):
        if is_header(split_header(line)[1]):
            return read_table(path, encoding, index)
    raise ImportFileError(not_found)


def reason(mask: pd.Series, why: str | pd.Series) -> pd.Series:
    """One dead-letter cause per row: ``why`` (per row, if a Series) where ``mask``, else None."""
    out = pd.Series(None, index=mask.index, dtype=object)
    out[mask] = why if isinstance(why, str) else why[mask]
    return out


def blank_and_ragged(table: Table) -> tuple[pd.Series, pd.Series]:
    """Rows with no field at all, and the reason of rows with more fields than the header."""
    extra = table.frame.iloc[:, len(table.columns) :]
    blank = table.frame.isna().all(axis=1)
    ragged = extra.notna().any(axis=1)
    return blank, reason(ragged, f"more fields than the header's {len(table.columns)}")


def time_errors(stamp: pd.Series, read: pd.Series, expected: str) -> tuple[pd.Series, pd.Series]:
    """The reasons of a timestamp column: missing, and present but not read (``read``: the
    rows whose time was read) as ``expected``."""
    invalid = stamp.notna() & ~read
    return (
        reason(stamp.isna(), "missing timestamp"),
        reason(invalid, "invalid timestamp " + stamp.map(repr) + f" (expected {expected})"),
    )


def text(frame: pd.DataFrame, column: str | None) -> pd.Series:
    """A column as stripped text (NaN where missing); an absent column is all NaN."""
    if column is None or column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=object)
    return frame[column].str.strip()


def pick_format(values: pd.Series, formats: Sequence[str]) -> tuple[str, pd.Series, bool]:
    """The one format (of ``formats``) that parses most of ``values``, per file.

    One format for the whole file, never a per-row fallback: with day-first and
    month-first candidates, a per-row fallback would read 01-02 and 13-02 in different
    orders.  Returns the format, the parsed times (NaT where invalid) and whether
    another format parsed just as many (an ambiguous file, e.g. every day <= 12).
    """
    present = values.notna()
    best: tuple[str, pd.Series, int] | None = None
    ambiguous = False
    for fmt in formats:
        parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        good = int((parsed.notna() & present).sum())
        if best is None or good > best[2]:
            best, ambiguous = (fmt, parsed, good), False
        elif good == best[2] and good > 0:
            ambiguous = True
    assert best is not None
    return best[0], best[1], ambiguous


def iso_text(local: pd.Series) -> pd.Series:
    """Naive wall times as ISO text to the second (what the gateway keeps as device_time)."""
    out = pd.Series(None, index=local.index, dtype=object)
    ok = local.notna()
    if ok.any():
        seconds = local[ok].to_numpy().astype("datetime64[s]")
        out[ok] = np.datetime_as_string(seconds, unit="s")
    return out


@dataclass(frozen=True, slots=True)
class Values:
    value: pd.Series  # float64, NaN where no number
    condition: pd.Series  # "" or a HI/LO Condition value
    error: pd.Series  # reason or None


def glucose_values(raw: pd.Series, what: str = "glucose value") -> Values:
    """Numbers, HI/LO words and bad text of a glucose column (decimal comma accepted)."""
    stripped = raw.str.strip()
    lowered = stripped.str.lower()
    low = lowered.isin(LOW_WORDS).fillna(False).astype(bool)
    high = lowered.isin(HIGH_WORDS).fillna(False).astype(bool)
    number = pd.to_numeric(stripped.str.replace(",", ".", regex=False), errors="coerce")
    number = number.where(~(low | high))
    condition = pd.Series("", index=raw.index, dtype=object)
    condition[low] = Condition.RESULT_BELOW_RANGE.value
    condition[high] = Condition.RESULT_ABOVE_RANGE.value
    bad = stripped.notna() & number.isna() & ~(low | high)
    error = pd.Series(None, index=raw.index, dtype=object)
    if bad.any():
        error[bad] = "non-numeric " + what + " " + stripped[bad].map(repr)
    return Values(number.astype(np.float64), condition, error)


def unit_of(column: str) -> str:
    """The unit a vendor column name ends with, e.g. 'Glucose Value (mmol/L)'."""
    lowered = column.lower()
    if "mmol" in lowered:
        return UNIT_MMOLL
    if "mg/dl" in lowered:
        return UNIT_MGDL
    raise ImportFileError(f"column {column!r} names no glucose unit (mg/dL or mmol/L)")


def first_error(*reasons: pd.Series) -> pd.Series:
    """Per row, the first non-null reason of ``reasons`` (None if all are null)."""
    out = reasons[0].copy()
    for more in reasons[1:]:
        out = out.where(out.notna(), more)
    return out.astype(object).where(out.notna(), None)


def empty_rows(table: Table) -> pd.DataFrame:
    """A ROW_COLUMNS frame of ``table``'s rows: their file lines, every other column unset,
    for a format module to fill."""
    index = table.frame.index
    n = len(index)
    return pd.DataFrame(
        {
            "line": table.first_line + index.to_numpy(),
            "patient": pd.Series(None, index=index, dtype=object),
            "device": pd.Series(None, index=index, dtype=object),
            "kind": pd.Series(Kind.GLUCOSE.value, index=index, dtype=object),
            "record_type": pd.Series(None, index=index, dtype=object),
            "local": pd.Series(pd.NaT, index=index, dtype="datetime64[us]"),
            "utc": pd.Series(pd.NaT, index=index, dtype="datetime64[us, UTC]"),
            "device_time": pd.Series(None, index=index, dtype=object),
            "value": np.full(n, np.nan),
            "unit": pd.Series(UNIT_MGDL, index=index, dtype=object),
            "condition": pd.Series("", index=index, dtype=object),
            "error": pd.Series(None, index=index, dtype=object),
            "skip": pd.Series(None, index=index, dtype=object),
        },
        index=index,
    )


def device_token(value: object, fallback: str) -> str:
    """A serial or transmitter id as it may appear in a device id (no spaces)."""
    if isinstance(value, str) and value.strip():
        return "-".join(value.split())
    return fallback
