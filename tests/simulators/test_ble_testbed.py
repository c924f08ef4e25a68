"""The test bed's up/down/status life cycle, as the CLI drives it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Imported as a module: pytest would collect functions named ``testbed_*`` as tests.
from simulators import testbed as tb

pytestmark = pytest.mark.ble


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_is_idempotent_and_down_stops_exactly_our_processes(tmp_path: Path) -> None:
    state = tmp_path / "bed"
    info = tb.testbed_up(state, adapters=2)
    try:
        assert info.adapter_names == ("hci0", "hci1", "hci2")
        assert info.gateway_adapter == "hci0"
        assert [a.address for a in info.adapters] == [tb.adapter_address(i) for i in range(3)]
        assert tb.adapter_address(0) == "00:00:00:00:00:01"
        assert tb.env_for(info) == {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={state}/bus.sock"}
        assert (state / "testbed.json").exists()
        again = tb.testbed_up(state, adapters=2)
        assert (again.dbus_pid, again.bluezoo_pid) == (info.dbus_pid, info.bluezoo_pid)
        status = tb.testbed_status(state)
        assert status is not None and status.bus_address == info.bus_address
    finally:
        tb.testbed_down(state)
    assert tb.testbed_status(state) is None
    assert not _alive(info.dbus_pid) and not _alive(info.bluezoo_pid)
    assert not (state / "testbed.json").exists()
    tb.testbed_down(state)  # a second down is harmless


def test_down_leaves_a_recycled_pid_alone(tmp_path: Path) -> None:
    state = tmp_path / "bed"
    state.mkdir()
    (state / "bluezoo.pid").write_text(f"{os.getpid()}\n")  # not ours to kill
    tb.testbed_down(state)
    assert _alive(os.getpid())
