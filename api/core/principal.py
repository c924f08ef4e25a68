"""Who is calling: a person (patient, clinician, admin) or a gateway service principal."""

from __future__ import annotations

from dataclasses import dataclass

from api.core.security import Role


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    name: str  # username, or the gateway id
    user_id: int | None  # None for gateways
    patient_id: int | None  # the patient's own record (patients, gateways)
    session_id: str = ""

    @property
    def is_person(self) -> bool:
        return self.role != "gateway"
