"""The home gateway: BLE health devices -> durable outbox -> MQTT (GitHub issue #5).

Modules, each small and single-purpose:

- ``config``     settings (frozen values built by the CLI)
- ``store``      SQLite state: paired devices, cursors, error counters, daemon status
- ``outbox``     durable, bounded, ordered queue of readings/events awaiting PUBACK
- ``publisher``  paho-mqtt v5 client: status/Last Will, drains the outbox in order
- ``clock``      device-local time -> UTC (skew, device offset, gateway zone, DST)
- ``transport``  one BLE session: connect, GATT operations with timeouts
- ``decode``     characteristic bytes -> ``ingest.wire.Reading`` (quirks honoured)
- ``fetch``      one small strategy per fetch method (RACP, indications on connect)
- ``sync``       one device session: info, battery, clock, fetch, commit
- ``daemon``     scanning, per-device tasks, the publisher, status
- ``pairing``    discover, bond, record, report ``DevicePaired``
- ``logs``       plain or JSON-lines logging
- ``cli``        the ``homevitals gateway`` click group
"""
