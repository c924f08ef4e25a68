"""``homevitals api``: the clinician/patient/EHR API and dashboard, and user accounts."""

from __future__ import annotations

import sys
from typing import Any

import click

from homevitals.config import Settings, load_settings


def build_app(settings: Settings) -> Any:
    """The FastAPI app wired to this deployment's database, broker and secrets."""
    from api.core.config import ApiSettings
    from api.main import create_app
    from homevitals.services.manager import endpoints, local_mosquitto
    from homevitals.services.system import read_or_create_secret

    found = endpoints(settings)
    secret_file = settings.state_dir.resolve() / "secrets" / "api_jwt_secret"
    read_or_create_secret(secret_file, nbytes=48)
    provision = None
    mqtt_public = None
    if settings.uses_local_broker:
        broker = local_mosquitto(settings)
        provision = broker.set_user
        mqtt_public = f"mqtt://127.0.0.1:{settings.mqtt_port}"
    api_settings = ApiSettings(
        database_url=found.database_url,
        jwt_secret_file=secret_file,
        clinic_timezone=settings.clinic_timezone,
        mqtt_public_url=mqtt_public,
        cookie_secure=settings.api_host not in ("127.0.0.1", "localhost", "::1"),
    )
    return create_app(api_settings, provision_gateway=provision)


@click.group()
def api() -> None:
    """The HTTP API (/api/v1, FHIR R4 under /fhir) and the clinician dashboard."""


@api.command("run")
@click.option(
    "--host", default=None, help="Bind address (default HOMEVITALS_API_HOST or 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="Port (default HOMEVITALS_API_PORT or 8765).")
def run(host: str | None, port: int | None) -> None:
    """Serve the API and dashboard with uvicorn."""
    import uvicorn

    settings = load_settings()
    if host is not None:
        settings = settings.model_copy(update={"api_host": host})
    app = build_app(settings)
    # log_config=None: uvicorn's loggers go through the root set-up (--log-level, --json-logs).
    uvicorn.run(app, host=settings.api_host, port=port or settings.api_port, log_config=None)


@api.command("add-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["clinician", "admin", "patient"]), required=True)
@click.option("--patient", default=None, help="For a patient user: the patient's external id.")
@click.option("--panel", multiple=True, help="For a clinician: patient external ids on the panel.")
@click.password_option()
def add_user(
    username: str, role: str, patient: str | None, panel: tuple[str, ...], password: str
) -> None:
    """Create or reset a user (operators; patients normally register with an activation code)."""
    import psycopg

    from analytics.store import resolve_patient
    from api.bootstrap import BootstrapError, add_to_panel, create_user
    from homevitals.services.manager import endpoints

    with psycopg.connect(endpoints(load_settings()).database_url, autocommit=True) as conn:
        try:
            patient_id = None
            if patient is not None:
                patient_id = resolve_patient(conn, patient)
                if patient_id is None:
                    raise BootstrapError(f"no patient {patient!r}")
            create_user(conn, username, password, role, patient_id=patient_id)
            for external in panel:
                pid = resolve_patient(conn, external)
                if pid is None:
                    raise BootstrapError(f"no patient {external!r}")
                add_to_panel(conn, username, pid)
        except BootstrapError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    click.echo(f"user {username} ({role}) ready")
