"""Targets and rule evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from analytics.rules import RULES, RULES_BY_ID, RuleKind, Severity, evaluate, results_frame
from analytics.targets import TargetCategory, default_targets

NOW = pd.Timestamp("2025-03-31 12:00", tz="UTC")


def cgm(values: np.ndarray, pid: str = "a", days: float = 14.0) -> pd.DataFrame:
    """5-minute CGM ending just before NOW, cycling through ``values``."""
    n = int(days * 288)
    times = NOW - pd.to_timedelta(np.arange(n, 0, -1) * 5, unit="min")
    return pd.DataFrame({"patient_id": pid, "time": times, "mgdl": np.resize(values, n)})


def smbg(
    rows: list[tuple[pd.Timedelta, float]], pid: str = "a", **extra: list[object]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pid,
            "time": [NOW - ago for ago, _ in rows],
            "mgdl": [v for _, v in rows],
            **extra,
        }
    )


def by_rule(results: list, pid: str = "a") -> dict:  # type: ignore[type-arg]
    return {r.rule_id: r for r in results if r.patient_id == pid}


def test_default_targets_by_category() -> None:
    std = default_targets()
    assert (
        std.tir_min_pct,
        std.tbr_max_pct,
        std.tbr54_max_pct,
        std.tar_max_pct,
        std.tar250_max_pct,
    ) == (70.0, 4.0, 1.0, 25.0, 5.0)
    old = default_targets("older_high_risk")
    assert (old.tir_min_pct, old.tbr_max_pct, old.tar250_max_pct) == (50.0, 1.0, 10.0)
    preg = default_targets(TargetCategory.PREGNANCY)
    assert (preg.range_low, preg.range_high, preg.tir_min_pct) == (63.0, 140.0, 70.0)


def test_overrides_are_checked_and_frozen() -> None:
    t = default_targets().with_overrides(bp_systolic=140.0, no_data_days=5)
    assert (t.bp_systolic, t.no_data_days, t.bp_diastolic) == (140.0, 5, 80.0)
    with pytest.raises(TypeError, match="unknown target fields"):
        default_targets().with_overrides(tir_target=60)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.bp_systolic = 1.0  # type: ignore[misc]


def test_rules_are_data() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    assert {r.kind for r in RULES} == set(RuleKind)
    assert RULES_BY_ID["urgent_low_glucose"].severity is Severity.URGENT


def test_urgent_low_and_high_glucose() -> None:
    frame = smbg(
        [
            (pd.Timedelta(hours=30), 40.0),
            (pd.Timedelta(hours=2), 50.0),
            (pd.Timedelta(hours=1), 450.0),
        ]
    )
    r = by_rule(evaluate(NOW, smbg=frame))
    low = r["urgent_low_glucose"]
    # only the 50 falls in the default 24 h urgent window (the 40 is 30 h old)
    assert low.triggered and low.evidence["min_mgdl"] == 50.0 and low.evidence["n_readings"] == 1
    assert low.evidence_from == low.evidence_to == NOW - pd.Timedelta(hours=2)
    high = r["urgent_high_glucose"]
    assert high.triggered and high.evidence["max_mgdl"] == 450.0


def test_lo_and_hi_results_are_urgent() -> None:
    frame = smbg(
        [(pd.Timedelta(hours=1), np.nan), (pd.Timedelta(hours=2), np.nan)],
        result_below_range=[True, False],
        result_above_range=[False, True],
    )
    r = by_rule(evaluate(NOW, smbg=frame))
    assert (
        r["urgent_low_glucose"].triggered and r["urgent_low_glucose"].evidence["n_flagged_lo"] == 1
    )
    assert r["urgent_high_glucose"].triggered


def test_bp_crisis_and_home_average() -> None:
    times = [NOW - pd.Timedelta(hours=12 * k + 1) for k in range(20)]
    frame = pd.DataFrame(
        {
            "patient_id": "a",
            "time": times,
            "systolic": [142.0] * 19 + [185.0],
            "diastolic": [86.0] * 20,
        }
    )
    r = by_rule(evaluate(NOW, bp=frame))
    assert not r["urgent_bp_crisis"].triggered  # the 185 is 229 h old, outside 24 h
    avg = r["bp_home_average_above_target"]
    assert avg.triggered and avg.evidence["mean_systolic"] == pytest.approx((142 * 19 + 185) / 20)
    frame.loc[0, "systolic"] = 181.0  # newest reading
    assert by_rule(evaluate(NOW, bp=frame))["urgent_bp_crisis"].triggered


def test_cgm_window_rules() -> None:
    # 1 in 8 readings at 60 (4032 = 504 cycles of 8), the rest 150 ->
    # TBR 12.5 % > 4 %, TIR 87.5 % >= 70 %
    r = by_rule(evaluate(NOW, cgm=cgm(np.array([60.0] + [150.0] * 7))))
    tbr = r["cgm_tbr_over_target"]
    assert tbr.triggered and tbr.evidence["metric_pct"] == pytest.approx(12.5)
    assert tbr.evidence["target_pct"] == 4.0 and tbr.evidence["wear_pct"] > 99
    assert not r["cgm_tbr54_over_target"].triggered
    assert not r["cgm_tir_under_target"].triggered
    assert not r["cgm_tar_over_target"].triggered


def test_cgm_window_needs_wear() -> None:
    # 5 days of data in a 14-day window: 36 % wear < 70 % -> no window flag
    r = by_rule(evaluate(NOW, cgm=cgm(np.array([40.0]), days=5)))
    tbr = r["cgm_tbr_over_target"]
    assert not tbr.triggered and tbr.evidence["insufficient_data"] is True
    assert r["urgent_low_glucose"].triggered  # urgent rules need no minimum


def test_pregnancy_targets_change_the_range() -> None:
    frame = cgm(np.array([150.0]))
    std = by_rule(evaluate(NOW, cgm=frame))
    assert not std["cgm_tir_under_target"].triggered
    preg = by_rule(evaluate(NOW, cgm=frame, targets={"a": default_targets("pregnancy")}))
    # 150 is above 140: TIR(63-140) = 0 % < 70 %, TAR(>140) = 100 % > 25 %
    assert preg["cgm_tir_under_target"].triggered
    assert preg["cgm_tar_over_target"].triggered
    assert "cgm_tar250_over_target" in preg and not preg["cgm_tar250_over_target"].triggered


def test_smbg_population_flag() -> None:
    rows = [(pd.Timedelta(hours=12 * k + 3), 65.0 if k % 5 == 0 else 120.0) for k in range(20)]
    r = by_rule(evaluate(NOW, smbg=smbg(rows)))
    # 4 of 20 readings < 70 = 20 % >= 10 %
    assert r["smbg_low_readings"].triggered
    assert r["smbg_low_readings"].evidence["metric_pct"] == pytest.approx(20.0)
    assert not r["smbg_high_readings"].triggered


def test_trend_rising_fasting_glucose() -> None:
    # one 07:00 reading a day for 20 days, rising 3 mg/dL/day: MK p << 0.05, slope 3 >= 1
    days = [
        NOW.normalize() - pd.Timedelta(days=d) + pd.Timedelta(hours=7) for d in range(20, 0, -1)
    ]
    rising = pd.DataFrame({"patient_id": "a", "time": days, "mgdl": 120.0 + 3.0 * np.arange(20)})
    flat = rising.assign(patient_id="b", mgdl=120.0 + np.resize([0.0, 5.0], 20))
    res = evaluate(NOW, smbg=pd.concat([rising, flat]))
    a, b = by_rule(res, "a"), by_rule(res, "b")
    assert a["trend_fasting_glucose_rising"].triggered
    assert a["trend_fasting_glucose_rising"].evidence["slope_per_day"] == pytest.approx(3.0)
    assert not b["trend_fasting_glucose_rising"].triggered


def test_adherence_rules() -> None:
    # readings on 10 days, the last one 4 days ago
    rows = [(pd.Timedelta(days=d), 120.0) for d in range(4, 14)]
    r = by_rule(evaluate(NOW, smbg=smbg(rows)))
    nd = r["adherence_no_data"]
    assert nd.triggered and nd.evidence["days_since_last_reading"] == pytest.approx(4.0)
    low = r["adherence_low_days"]
    assert low.triggered and low.evidence["days_with_readings"] == 10


def test_patient_without_any_reading() -> None:
    r = by_rule(evaluate(NOW, smbg=smbg([(pd.Timedelta(hours=1), 100.0)]), patients=["z"]), "z")
    assert r["adherence_no_data"].triggered and r["adherence_no_data"].evidence_to is None


def test_evaluation_is_per_patient() -> None:
    a = cgm(np.array([60.0] + [150.0] * 9), pid="a")
    b = cgm(np.array([120.0]), pid="b")
    together = results_frame(evaluate(NOW, cgm=pd.concat([a, b])))
    alone = pd.concat([results_frame(evaluate(NOW, cgm=a)), results_frame(evaluate(NOW, cgm=b))])
    cols = ["patient_id", "rule_id", "triggered", "evidence_from", "evidence_to"]
    pd.testing.assert_frame_equal(
        together[cols].reset_index(drop=True), alone[cols].reset_index(drop=True)
    )
