"""Per-patient clinical targets: a consensus category plus clinician overrides."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, status

from analytics.targets import Targets, default_targets
from api.core.errors import COMMON
from api.deps import PatientDep, StaffUser
from api.schemas import TargetsIn, TargetsOut, TargetValue

router = APIRouter(prefix="/patients/{patient_id}/targets", tags=["targets"], responses=COMMON)

_FIELDS = {f.name: str(f.type) for f in dataclasses.fields(Targets) if f.name != "category"}


def effective(category: str, overrides: dict[str, Any]) -> Targets:
    return default_targets(category).with_overrides(**overrides)


def validate_overrides(category: str, overrides: dict[str, TargetValue]) -> dict[str, TargetValue]:
    """Known names only, numbers that fit the field (None only where "no target" is allowed)."""
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"unknown target(s) {unknown}; known: {sorted(_FIELDS)}",
        )
    clean: dict[str, TargetValue] = {}
    for name, value in overrides.items():
        kind = _FIELDS[name]
        if value is None:
            if "None" not in kind:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} cannot be null")
            clean[name] = None
            continue
        if isinstance(value, bool) or not math.isfinite(float(value)) or value < 0:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} must be a number >= 0")
        if kind.startswith("int"):
            if float(value) != int(value):
                raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} must be a whole number")
            clean[name] = int(value)
        else:
            if name.endswith("_pct") and value > 100:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} is a percentage (0-100)")
            clean[name] = float(value)
    targets = effective(category, clean)
    if targets.range_low >= targets.range_high:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "range_low must be below range_high")
    return clean


def _out(patient_id: int, row: tuple[Any, ...] | None) -> TargetsOut:
    category, overrides, by, at = row if row else ("standard", {}, None, None)
    targets = effective(category, overrides)
    values = {k: v for k, v in dataclasses.asdict(targets).items()}
    values["category"] = str(targets.category)
    return TargetsOut(
        patient_id=patient_id,
        category=category,
        overrides=overrides,
        effective=values,
        updated_by=by,
        updated_at=at,
    )


@router.get("", response_model=TargetsOut, summary="The patient's targets (defaults if unset)")
def get_targets(scope: PatientDep) -> TargetsOut:
    row = scope.conn.execute(
        "SELECT category, overrides, updated_by, updated_at FROM patient_targets"
        " WHERE patient_id = %s",
        (scope.patient_id,),
    ).fetchone()
    scope.audit("targets.read", f"patient/{scope.patient_id}/targets")
    return _out(scope.patient_id, row)


@router.put("", response_model=TargetsOut, summary="Set the category and overrides (staff)")
def put_targets(body: TargetsIn, scope: PatientDep, user: StaffUser) -> TargetsOut:
    overrides = validate_overrides(body.category, dict(body.overrides))
    try:
        effective(body.category, overrides)
    except (TypeError, ValueError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    row = scope.conn.execute(
        "INSERT INTO patient_targets (patient_id, category, overrides, updated_by)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (patient_id) DO UPDATE SET"
        " category = EXCLUDED.category, overrides = EXCLUDED.overrides,"
        " updated_by = EXCLUDED.updated_by, updated_at = now()"
        " RETURNING category, overrides, updated_by, updated_at",
        (scope.patient_id, body.category, orjson.dumps(overrides).decode(), user.name),
    ).fetchone()
    scope.audit(
        "targets.update",
        f"patient/{scope.patient_id}/targets",
        {"category": body.category, "overrides": overrides},
    )
    return _out(scope.patient_id, row)
