"""API test fixtures: the real app on the real test database, and a small clinic.

The clinic: an admin, two clinicians (A and B on Dr Lee's panel, C on Dr Ray's),
patients A, B (with portal accounts) and C; patient A has 14 days of CGM, fingersticks,
home BP and open flags.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_helpers import Auth, Clinic, ProvisionRecorder, seed_clinic
from fastapi.testclient import TestClient

from api.core.config import ApiSettings
from api.main import create_app


@pytest.fixture(scope="session")
def provisioned() -> ProvisionRecorder:
    return ProvisionRecorder()


@pytest.fixture(scope="session")
def api_settings(database_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=database_url,
        jwt_secret=secrets.token_urlsafe(48),
        public_base_url="https://testserver",
    )


@pytest.fixture(scope="session")
def app(api_settings: ApiSettings, provisioned: ProvisionRecorder) -> Any:
    return create_app(api_settings, provision_gateway=provisioned)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as c:
        yield c


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def clinic(db: psycopg.Connection[Any]) -> Clinic:
    return seed_clinic(db)


@pytest.fixture(scope="session")
def auth(client: TestClient) -> Auth:
    return Auth(client)
