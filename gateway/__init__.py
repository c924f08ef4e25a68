"""The home gateway: BLE health devices -> durable outbox -> MQTT (GitHub issue #5).

Device time -> UTC, characteristic bytes -> wire readings and log set-up live in the
shared reading contract (``readings``), which ingest and the simulators use too.

Modules, each small and single-purpose:

- ``config``     settings (frozen values built by the CLI)
- ``store``      SQLite state: paired devices, cursors, error counters, daemon status
- ``outbox``     durable, bounded, ordered queue of readings/events awaiting PUBACK
- ``publisher``  paho-mqtt v5 client: status/Last Will, drains the outbox in order
- ``transport``  one BLE session: connect, GATT operations with timeouts
- ``fetch``      one small strategy per fetch method (RACP, indications on connect)
- ``cursors``    one cursor policy per fetch method: what is new, where to resume
- ``sync``       one device session: info, battery, clock, fetch, commit
- ``daemon``     scanning, per-device tasks, the publisher, status
- ``pairing``    discover, bond, record, report ``DevicePaired``
- ``cli``        the ``homevitals gateway`` click group
"""

# The public modules; other packages import these (tests/test_layers.py checks the
# direction).  Submodules load on first use, so importing the package stays cheap.
__all__ = [
    "cli",
    "config",
    "cursors",
    "daemon",
    "fetch",
    "outbox",
    "pairing",
    "publisher",
    "store",
    "sync",
    "transport",
]
