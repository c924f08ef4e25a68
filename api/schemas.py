"""Request and response models of the REST API (``/api/v1``)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")


def _no_control(value: str) -> str:
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise ValueError("control characters are not allowed")
    return value


# Free text people type: no NUL/control characters (PostgreSQL rejects NUL anyway).
NoControl = AfterValidator(_no_control)
Text = Annotated[str, NoControl]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoControl
]
Note = Annotated[str, StringConstraints(max_length=2000), NoControl]
NonBlank = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), NoControl
]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{3,64}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256), NoControl]
Mrn = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9-]{1,32}$")]
ExternalId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
GatewayId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$")]
Code = Annotated[str, StringConstraints(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9 -]+$")]
TimeZoneName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+/-]{1,64}$")]
UserRole = Literal["patient", "clinician", "admin"]
CreatableRole = Literal["clinician", "admin"]

DEVICE_ID = re.compile(r"^[A-Za-z0-9:._-]{1,128}$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """A page of a list: ``next`` is the URL of the following page, if any."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None = None


# --- auth / users --------------------------------------------------------------------


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str | None = None


class RefreshIn(Model):
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class UserOut(BaseModel):
    id: int
    username: str
    role: UserRole
    patient_id: int | None
    display_name: str | None
    active: bool
    created_at: datetime


class UserCreateIn(Model):
    username: Username
    password: Password
    role: CreatableRole
    display_name: Name | None = None


class UserPatchIn(Model):
    active: bool | None = None
    display_name: Name | None = None
    password: Password | None = None


class PanelIn(Model):
    patient_id: int = Field(ge=1, le=2**62)


class RegisterIn(Model):
    """Patient self-registration with the clinic's activation code (MyChart-like)."""

    activation_code: Code
    given_name: Name
    family_name: Name
    birth_date: date
    mrn: Mrn
    username: Username
    password: Password


# --- patients, devices, gateways -------------------------------------------------------


class PatientIn(Model):
    given_name: Name
    family_name: Name
    birth_date: date
    mrn: Mrn
    timezone: TimeZoneName = "America/New_York"
    external_id: ExternalId | None = Field(default=None, description="default: generated")


class PatientOut(BaseModel):
    id: int
    external_id: str
    mrn: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    timezone: str
    created_at: datetime
    has_account: bool


class CodeOut(BaseModel):
    code: str = Field(description="shown once; stored only as a hash")
    patient_id: int
    expires_at: datetime


class PatientCreated(BaseModel):
    patient: PatientOut
    activation: CodeOut


class GatewayEnrollIn(Model):
    enrollment_code: Code
    gateway_id: GatewayId | None = Field(default=None, description="default: generated")


class GatewayEnrolled(BaseModel):
    gateway_id: str
    patient_id: int
    mqtt_username: str
    mqtt_password: str = Field(description="also the gateway's API client secret; shown once")
    mqtt_url: str | None
    topic_prefix: str
    bound_devices: list[str]


class GatewayTokenIn(Model):
    gateway_id: GatewayId
    secret: Annotated[str, StringConstraints(min_length=8, max_length=200)]


class SyncStatus(BaseModel):
    state: Literal["ok", "stale", "never"]
    hours_since_sync: float | None


class DeviceOut(BaseModel):
    id: str
    gateway_id: str | None
    profile: str | None
    name: str | None
    manufacturer: str | None
    model: str | None
    serial: str | None
    battery_percent: int | None
    clock_skew_s: float | None
    last_sync: datetime | None
    last_error: str | None
    bound_from: datetime | None
    bound_until: datetime | None
    sync: SyncStatus


class GatewayOut(BaseModel):
    id: str
    patient_id: int | None
    last_seen: datetime | None
    state: str | None
    outbox_depth: int | None
    version: str | None
    created_at: datetime


class DeviceAssignIn(Model):
    device_id: Annotated[str, StringConstraints(pattern=DEVICE_ID.pattern)]
    at: datetime | None = Field(default=None, description="binding start; default now")
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NoControl
    ] = Field(description="why the device changes hands (kept in the audit log)")


# --- readings ----------------------------------------------------------------------------

# What the device reported beyond the main values, as ingest stored it (the wire's
# ``details``: scalar values only), e.g. {"sample_type": "capillary_plasma",
# "sample_location": "finger"} for a fingerstick, {"user_id": 1} for a cuff.
ReadingDetails = Annotated[
    dict[str, int | float | str | bool | None] | None,
    Field(
        description="what the device reported beyond the main values (sample type and"
        " location, device user, time offset, ...); null when it reported nothing more"
    ),
]


# The device's own values and units (provenance), as on the wire and in storage:
# {component: [value, UCUM unit]}, e.g. {"weight": [165.35, "[lb_av]"]}.
ReadingOriginal = Annotated[
    dict[str, tuple[float | None, str]] | None,
    Field(
        description="the device's own value and unit per component, before conversion to"
        " the canonical unit; null when not kept (readings stored before migration 0008)"
    ),
]
RecordTypeOut = Annotated[
    str | None,
    Field(
        description="cgm, scan, strip, control, manual or measured; null for readings"
        " stored before migration 0008 (the kind's usual type)"
    ),
]


class GlucoseReadingOut(BaseModel):
    time: datetime
    reading_id: uuid.UUID
    device_id: str
    source: Literal["smbg", "cgm"]
    mgdl: float | None
    conditions: list[str]
    device_time: str | None
    skew_s: float | None
    gateway_id: str | None
    trend_mgdl_min: float | None = Field(
        default=None, description="CGM trend, mg/dL per minute (CGM records that carry it)"
    )
    quality_pct: float | None = Field(
        default=None, description="CGM quality, % (CGM records that carry it)"
    )
    details: ReadingDetails = None
    original: ReadingOriginal = None
    record_type: RecordTypeOut = None


class BpReadingOut(BaseModel):
    time: datetime
    reading_id: uuid.UUID
    device_id: str
    systolic: float
    diastolic: float
    mean_arterial: float | None
    pulse: float | None
    conditions: list[str]
    device_time: str | None
    skew_s: float | None
    gateway_id: str | None
    details: ReadingDetails = None
    original: ReadingOriginal = None
    record_type: RecordTypeOut = None


class BodyReadingOut(BaseModel):
    time: datetime
    reading_id: uuid.UUID
    device_id: str
    kind: str
    components: dict[str, Any]
    conditions: list[str]
    device_time: str | None
    skew_s: float | None
    gateway_id: str | None
    details: ReadingDetails = None
    original: ReadingOriginal = None
    record_type: RecordTypeOut = None


class GlucoseBucketOut(BaseModel):
    bucket: datetime
    n: int
    mean: float | None
    min: float | None
    max: float | None


class BpBucketOut(BaseModel):
    bucket: datetime
    n: int
    systolic_mean: float
    diastolic_mean: float
    systolic_max: float
    diastolic_max: float
    pulse_mean: float | None


# --- flags, targets, panel, audit ------------------------------------------------------


class FlagOut(BaseModel):
    id: int
    patient_id: int
    rule_id: str
    severity: Literal["urgent", "high", "medium", "low"]
    status: Literal["open", "acknowledged", "resolved"]
    summary: str
    evidence: dict[str, Any]
    evidence_from: datetime | None
    evidence_to: datetime | None
    condition_active: bool
    cleared_at: datetime | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_note: str | None


class AcknowledgeIn(Model):
    note: Note | None = None


class ResolveIn(Model):
    note: NonBlank


TargetValue = float | int | None


class TargetsIn(Model):
    category: Literal["standard", "older_high_risk", "pregnancy"] = "standard"
    overrides: dict[Annotated[str, StringConstraints(max_length=64)], TargetValue] = Field(
        default_factory=dict, max_length=64
    )


class TargetsOut(BaseModel):
    patient_id: int
    category: Literal["standard", "older_high_risk", "pregnancy"]
    overrides: dict[str, TargetValue]
    effective: dict[str, Any] = Field(description="defaults for the category plus overrides")
    updated_by: str | None
    updated_at: datetime | None


class PanelEntry(BaseModel):
    patient: PatientOut
    open_flags: int
    urgent_open_flags: int
    worst_open_severity: Literal["urgent", "high", "medium", "low"] | None
    tir_pct: float | None = Field(description="CGM 70-180 % (SMBG if no CGM), last 14 days")
    tbr_pct: float | None = Field(description="below 70 %, same source")
    glucose_source: Literal["cgm", "smbg"] | None
    last_reading: datetime | None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_id: int | None
    role: str
    action: str
    patient_id: int | None
    resource: str | None
    client_ip: str | None
    status: int | None
    detail: dict[str, Any]


class HealthOut(BaseModel):
    status: Literal["ok"]
