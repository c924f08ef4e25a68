"""Schemathesis against the OpenAPI document, in process (ASGI), on its own database:
no 5xx, responses conform to the documented status codes, content types and schemas,
and schema-invalid requests are rejected with 4xx (positive and negative generation).

Runs as an admin (sees every route) with a bounded number of examples per operation.
Its own database, because fuzzing as admin disables users, edits panels and targets.
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
import schemathesis
from api_helpers import PASSWORD, seed_clinic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.core.config import ApiSettings
from api.core.security import create_token
from api.main import create_app
from homevitals.services.postgres import LocalPostgres
from ingest.migrations import migrate

MAX_EXAMPLES = 30


@pytest.fixture(scope="session")
def fuzz_app(local_postgres: LocalPostgres) -> Any:
    url = local_postgres.create_database("hv_test_api_fuzz")
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        clinic = seed_clinic(conn)
        admin_id = conn.execute(
            "SELECT id FROM users WHERE username = %s", (clinic.admin,)
        ).fetchone()
    assert admin_id is not None and PASSWORD
    settings = ApiSettings(database_url=url, jwt_secret=secrets.token_urlsafe(48))
    app = create_app(settings, provision_gateway=lambda gateway, password: None)
    app.state.fuzz_admin = (int(admin_id[0]), settings)
    return app


@pytest.fixture(scope="session")
def fuzz_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_app)


def _operations() -> list[tuple[str, str]]:
    # The document does not depend on the database: list the operations at collection time.
    offline = create_app(ApiSettings(database_url="postgresql://unused", jwt_secret="x" * 48))
    return [
        (path, method.upper())
        for path, item in offline.openapi()["paths"].items()
        for method in item
    ]


def _admin_headers(app: Any) -> dict[str, str]:
    # A token minted directly (as the login endpoint would), so a fuzzed PATCH that
    # disables the admin shows up as 401s, which are documented, not as a crash.
    admin_id, api_settings = app.state.fuzz_admin
    token, _ = create_token(
        api_settings.secret, subject=str(admin_id), role="admin", patient_id=None, minutes=15
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("path", "method"), _operations())
def test_openapi_conformance(path: str, method: str, fuzz_schema: Any, fuzz_app: Any) -> None:
    operation = fuzz_schema[path][method]
    headers = _admin_headers(fuzz_app)

    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        if path == "/api/v1/users/{user_id}" and isinstance(case.body, dict):
            case.body.pop("active", None)  # keep the fuzzing admin enabled
        # Schema-valid requests that break a business rule (an unknown activation code, a
        # time zone name that does not exist, start after end) are answered 400 by design,
        # so "positive data must be accepted" is not a property of this API.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()
