"""Who is calling: a person (patient, clinician, admin), a gateway service principal, or
a SMART system client (an EHR integration)."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.core.security import Role


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    name: str  # username, the gateway id, or "client:<client id>"
    user_id: int | None  # None for gateways and system clients
    patient_id: int | None  # the patient's own record (patients, gateways)
    session_id: str = ""
    # System clients only: granted SMART scopes (resource -> permissions) and the
    # clinician whose panel bounds the patients the client may see.
    scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    panel_of: int | None = None
    # People only: the account's token epoch (users.token_epoch) their tokens carry.
    token_epoch: int = 0

    @property
    def is_person(self) -> bool:
        return self.role not in ("gateway", "system")

    @property
    def is_client(self) -> bool:
        return self.role == "system"
