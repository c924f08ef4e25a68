"""The custody rule as a table, written from its statement (issue #14), not from the code:
a device belongs to one patient at a time through one hub; a pairing that would move it
to another hub or another patient waits for a clinician."""

from __future__ import annotations

import pytest

from ingest.custody import Verdict, pairing_verdict

HUB, OTHER_HUB = "gw-mine", "gw-theirs"
ME, SOMEONE = 1, 2

CASES = [
    # custodian, owner, the asking hub's patient, inventory?, verdict, why
    (None, None, ME, False, Verdict.TAKE, "free device: the hub takes it"),
    (None, None, None, False, Verdict.TAKE, "free device, hub not enrolled yet"),
    (None, ME, ME, False, Verdict.TAKE, "released or imported device of the same patient"),
    (None, SOMEONE, ME, False, Verdict.HOLD, "released device still bound to another patient"),
    (None, SOMEONE, None, False, Verdict.HOLD, "an unenrolled hub may not take a bound device"),
    (HUB, ME, ME, False, Verdict.CONFIRM, "its own hub pairs it again"),
    (HUB, ME, ME, True, Verdict.CONFIRM, "its own hub's inventory"),
    (HUB, None, ME, False, Verdict.TAKE, "its hub was enrolled since: bind it"),
    (HUB, None, None, True, Verdict.CONFIRM, "its hub has no patient yet"),
    (HUB, SOMEONE, ME, False, Verdict.HOLD, "a clinician gave it to another patient"),
    (HUB, SOMEONE, ME, True, Verdict.CONFIRM, "an inventory never re-assigns"),
    (OTHER_HUB, SOMEONE, ME, False, Verdict.HOLD, "another household's device"),
    (OTHER_HUB, SOMEONE, ME, True, Verdict.HOLD, "another household's device (inventory)"),
    (OTHER_HUB, ME, ME, False, Verdict.HOLD, "the patient's other hub: still a move"),
    (OTHER_HUB, None, None, False, Verdict.HOLD, "held by a hub without a patient"),
]


@pytest.mark.parametrize(
    ("custodian", "owner", "hub_patient", "inventory", "verdict"),
    [case[:5] for case in CASES],
    ids=[case[5] for case in CASES],
)
def test_pairing_verdict(
    custodian: str | None,
    owner: int | None,
    hub_patient: int | None,
    inventory: bool,
    verdict: Verdict,
) -> None:
    assert pairing_verdict(HUB, hub_patient, custodian, owner, inventory=inventory) is verdict
