"""Manual testing: ``python -m device_profiles <uuid> <hex>`` prints the decoded JSON."""

from __future__ import annotations

import json
import sys

from device_profiles.errors import MalformedPayloadError, UnknownCharacteristicError
from device_profiles.registry import InvalidHexError, decode, parse_hex, to_jsonable
from device_profiles.uuids import InvalidUuidError


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m device_profiles <uuid> <hex bytes...>", file=sys.stderr)
        return 2
    try:
        result = decode(argv[0], parse_hex(" ".join(argv[1:])))
    except (
        MalformedPayloadError,
        UnknownCharacteristicError,
        InvalidHexError,
        InvalidUuidError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
