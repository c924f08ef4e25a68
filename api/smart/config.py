"""``GET /fhir/.well-known/smart-configuration``: how a SMART client finds the token
endpoint, the grant and client-authentication methods and the scopes on offer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.core.config import ApiSettings
from api.smart import scopes as sc

TOKEN_PATH = "/api/v1/auth/token"

router = APIRouter(tags=["fhir"])


def token_url(request: Request) -> str:
    # From configuration only: a Host (or X-Forwarded-Host) header is the client's to
    # choose, and a forged one would send other clients' secrets to the attacker.
    settings: ApiSettings = request.app.state.settings
    return settings.public_base_url + TOKEN_PATH


def smart_configuration(request: Request) -> dict[str, Any]:
    return {
        "token_endpoint": token_url(request),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        # No authorization endpoint: no EHR/standalone launch, backend services only.
        "capabilities": ["client-confidential-symmetric", "permission-v2", "permission-v1"],
        "scopes_supported": sc.supported(),
        "response_types_supported": ["token"],
        "code_challenge_methods_supported": [],
    }


@router.get(
    "/.well-known/smart-configuration",
    summary="SMART configuration (token endpoint, grant types, scopes)",
    response_model=dict[str, Any],
    responses={200: {"description": "SMART configuration document (JSON)"}},
)
def well_known(request: Request) -> JSONResponse:
    # Public by design (SMART App Launch 2.0): clients read it before they have a token.
    return JSONResponse(smart_configuration(request))
