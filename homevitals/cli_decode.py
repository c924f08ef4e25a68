"""``homevitals decode``: decode one characteristic value, as nRF Connect shows it."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("characteristic")
@click.argument("hex_bytes", nargs=-1, required=True)
def decode(characteristic: str, hex_bytes: tuple[str, ...]) -> None:
    """Decode CHARACTERISTIC's value HEX_BYTES and print it as JSON.

    CHARACTERISTIC: 2A18, 0x2a18 or the full 128-bit UUID.  HEX_BYTES: with or without
    spaces, colons or dashes ("02-01-00", "02 01 00", "020100").  Exits non-zero with
    the reason when the bytes are malformed.
    """
    from device_profiles.errors import MalformedPayloadError
    from device_profiles.registry import UnknownCharacteristicError, parse_hex, to_jsonable
    from device_profiles.registry import decode as decode_value

    try:
        data = parse_hex(" ".join(hex_bytes))
        result = decode_value(characteristic, data)
    except (MalformedPayloadError, UnknownCharacteristicError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False))
