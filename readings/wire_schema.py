"""The published JSON Schema file of the wire contract: write it, or check it.

``python -m readings.wire_schema --write`` regenerates ``readings/wire_schema.json`` from
the code with the locked msgspec (scripts/lock.sh runs it); ``--check`` exits 1 when the
file and the code disagree.  The file is what integrators validate against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from readings.wire import json_schema

SCHEMA_FILE = Path(__file__).with_name("wire_schema.json")


def rendered() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        SCHEMA_FILE.write_text(rendered())
        return 0
    if argv == ["--check"]:
        if SCHEMA_FILE.read_text() == rendered():
            return 0
        print(
            f"{SCHEMA_FILE} differs from the code: python -m readings.wire_schema --write",
            file=sys.stderr,
        )
        return 1
    print("usage: python -m readings.wire_schema --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
