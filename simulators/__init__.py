"""Simulators: patients and scenarios with ground truth, a fleet of gateways over MQTT, and
BLE devices for the gateway test bed.

- ``simulators.patients``: deterministic simulated patients (glucose, home BP, adherence).
- ``simulators.scenarios``: named scenarios injecting known events, with a JSON ground truth.
- ``simulators.fleet``: N gateways x M devices publishing readings with the wire contract.
- ``simulators.ble`` / ``simulators.testbed``: simulated BLE peripherals (BlueZoo).
"""

# The public modules; other packages import these (tests/test_layers.py checks the
# direction).  Submodules load on first use, so importing the package stays cheap.
__all__ = [
    "ble",
    "bluezoo_patches",
    "cli_support",
    "fleet",
    "patients",
    "scenarios",
    "testbed",
]
