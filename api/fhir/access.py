"""Who may use a FHIR interaction: people as before (their role and patient scope), and
SMART system clients only with the matching scope (``system/<Type>.r`` to read,
``.s`` to search); the patients a client then sees are bounded in ``api.deps``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from api.core import audit
from api.core.principal import Principal
from api.deps import ConnDep, PrincipalDep, get_person
from api.smart import scopes as sc


def fhir_reader(resource: str, interaction: str) -> Callable[..., Principal]:
    def check(principal: PrincipalDep, conn: ConnDep, request: Request) -> Principal:
        if not principal.is_client:
            return get_person(principal, conn, request)
        if not sc.allows(principal.scopes, resource, interaction):
            missing = f"system/{resource}.{interaction}"
            # An integration reaching past its grant is worth a look: audited like a
            # person's attempt on a patient outside their scope.
            audit.write(
                conn,
                principal,
                "access.denied",
                ip=audit.client_ip(request),
                resource=request.url.path,
                status=403,
                detail={"missing_scope": missing},
            )
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks scope {missing}")
        return principal

    return check


PatientRead = Annotated[Principal, Depends(fhir_reader("Patient", "r"))]
PatientSearch = Annotated[Principal, Depends(fhir_reader("Patient", "s"))]
DeviceRead = Annotated[Principal, Depends(fhir_reader("Device", "r"))]
DeviceSearch = Annotated[Principal, Depends(fhir_reader("Device", "s"))]
ObservationRead = Annotated[Principal, Depends(fhir_reader("Observation", "r"))]
ObservationSearch = Annotated[Principal, Depends(fhir_reader("Observation", "s"))]
FlagRead = Annotated[Principal, Depends(fhir_reader("Flag", "r"))]
FlagSearch = Annotated[Principal, Depends(fhir_reader("Flag", "s"))]
