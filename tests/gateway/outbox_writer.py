"""Child process of the outbox kill-safety test: downloads "records" forever.

Each round commits 37 readings and the cursor in one transaction, exactly as the sync
engine does; the parent kills this process with SIGKILL at random moments.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gw_helpers import make_reading

from gateway.outbox import Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice

DEVICE = "00:00:00:AA:AA:AA"


def main(db_path: str, total: int) -> None:
    db = GatewayDB(Path(db_path))
    devices = DeviceStore(db)
    outbox = Outbox(db)
    if devices.get(DEVICE) is None:
        devices.add(PairedDevice(address=DEVICE, profile="test"))
    print("ready", flush=True)
    while True:
        device = devices.get(DEVICE)
        assert device is not None
        start = (device.cursor or 0) + 1
        if start > total:
            print("done", flush=True)
            return
        seqs = range(start, min(start + 37, total + 1))
        with db.transaction() as conn:
            outbox.enqueue_readings(conn, [make_reading(DEVICE, s) for s in seqs])
            devices.advance(conn, DEVICE, cursor=seqs[-1], last_device_time=None)
        # Simulate the publisher taking some rows in between.
        batch = outbox.next_batch(0, max_readings=20)
        if batch is not None and seqs[-1] % 3 == 0:
            outbox.delete(batch.row_ids)
            with open(db_path + ".acked", "a") as f:
                f.write("".join(f"{r.seq}\n" for r in batch.readings))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
