"""``homevitals api``: the clinician/patient/EHR API and dashboard, and user accounts."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from homevitals.config import Settings, load_settings

if TYPE_CHECKING:
    pass

# Import string of the uvicorn factory below: worker processes import it by name.
APP_FACTORY = "homevitals.cli_api:app_from_env"


def jwt_secret_file(settings: Settings) -> Path:
    """The API's signing key, generated on first use (state directory, mode 0600)."""
    from homevitals.services.system import read_or_create_secret

    path = settings.state_dir.resolve() / "secrets" / "api_jwt_secret"
    read_or_create_secret(path, nbytes=48)
    return path


def build_app(settings: Settings) -> Any:
    """The FastAPI app wired to this deployment's database, broker and secrets."""
    from api.core.config import ApiSettings
    from api.main import create_app
    from homevitals.services.manager import endpoints, local_mosquitto

    found = endpoints(settings)
    secret_file = jwt_secret_file(settings)
    provision = None
    mqtt_public = None
    if settings.uses_local_broker:
        # Refuses service-account names; locks the password file itself.
        provision = local_mosquitto(settings).provision_gateway_account
        mqtt_public = f"mqtt://127.0.0.1:{settings.mqtt_port}"
    # HOMEVITALS_API_PUBLIC_BASE_URL (behind a proxy: the URL clients use) wins; else
    # the address the API is served at.
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    public = os.environ.get("HOMEVITALS_API_PUBLIC_BASE_URL") or (
        f"http://{host}:{settings.api_port}"
    )
    api_settings = ApiSettings(
        public_base_url=public,
        database_url=found.database_url,
        jwt_secret_file=secret_file,
        clinic_timezone=settings.clinic_timezone,
        mqtt_public_url=mqtt_public,
        # cookie_secure: HOMEVITALS_API_COOKIE_SECURE, else follows the public URL's scheme.
    )
    return create_app(api_settings, provision_gateway=provision)


@click.group()
def api() -> None:
    """The HTTP API (/api/v1, FHIR R4 under /fhir) and the clinician dashboard."""


def app_from_env() -> Any:
    """uvicorn factory for ``homevitals api run``: every worker process builds its app
    from the same ``HOMEVITALS_*`` environment (and ``homevitals.toml``) as the command,
    with the log set-up the command exported."""
    from readings import setup_logging

    setup_logging(
        os.environ.get("HOMEVITALS_LOG_LEVEL", "WARNING"),
        json_lines=os.environ.get("HOMEVITALS_JSON_LOGS", "") == "1",
    )
    return build_app(load_settings())


def _export_for_workers(host: str | None) -> Settings:
    """Put what the command line decided into the environment the workers inherit."""
    if host is not None:
        os.environ["HOMEVITALS_API_HOST"] = host  # also decides the cookies' Secure flag
    root = click.get_current_context().find_root().params
    os.environ["HOMEVITALS_LOG_LEVEL"] = logging.getLevelName(logging.getLogger().level)
    os.environ["HOMEVITALS_JSON_LOGS"] = "1" if root.get("json_logs") else "0"
    return load_settings()


@api.command("run")
@click.option(
    "--host", default=None, help="Bind address (default HOMEVITALS_API_HOST or 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="Port (default HOMEVITALS_API_PORT or 8765).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="uvicorn worker processes; each has its own database pool"
    " (HOMEVITALS_API_POOL_MAX_SIZE connections at most).",
)
def run(host: str | None, port: int | None, workers: int) -> None:
    """Serve the API and dashboard with uvicorn."""
    import uvicorn

    settings = _export_for_workers(host)
    # Before any worker starts: workers racing to create the key would each sign with
    # their own, and tokens would fail on the other workers.
    jwt_secret_file(settings)
    # Built here even for several workers: bad settings fail now, with their message
    # (a worker failing at start-up stops uvicorn's supervisor with exit status 0).
    app = build_app(settings)
    # Several workers need an import string: each worker process builds its own app.
    target: Any = app if workers == 1 else APP_FACTORY
    # The client address (audit, sign-in and enrolment limits) is the TCP peer: uvicorn's
    # default would believe X-Forwarded-For/-Proto from any loopback peer, so anyone on
    # the host, or any request relayed by a local proxy, could pick their address.
    # HOMEVITALS_API_TRUSTED_PROXIES opts in for a real reverse proxy.
    trusted = app.state.settings.trusted_proxies.strip()
    # log_config=None: uvicorn's loggers go through the root set-up (--log-level, --json-logs).
    uvicorn.run(
        target,
        factory=workers > 1,
        host=settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
    )


def cli_audit(
    conn: Any,
    action: str,
    resource: str | None,
    detail: dict[str, Any],
    status: int = 200,
    patient_id: int | None = None,
) -> None:
    """An administrative action from the command line, on record like the API's: the
    operator's login name as actor (``cli:<name>``), role ``operator``, the host."""
    import getpass
    import socket

    from api.core import audit

    audit.write(
        conn,
        None,
        action,
        ip=None,
        actor=f"cli:{getpass.getuser()}",
        role="operator",
        patient_id=patient_id,
        resource=resource,
        status=status,
        detail={**detail, "host": socket.gethostname()},
    )


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
            with conn.transaction():
                patient_id = None
                if patient is not None:
                    patient_id = resolve_patient(conn, patient)
                    if patient_id is None:
                        raise BootstrapError(f"no patient {patient!r}")
                existed = conn.execute(
                    "SELECT 1 FROM users WHERE lower(username) = lower(%s)", (username,)
                ).fetchone()
                user_id = create_user(conn, username, password, role, patient_id=patient_id)
                cli_audit(
                    conn,
                    "user.reset" if existed else "user.create",
                    f"user/{user_id}",
                    {"username": username, "role": role},
                    patient_id=patient_id,
                )
                for external in panel:
                    pid = resolve_patient(conn, external)
                    if pid is None:
                        raise BootstrapError(f"no patient {external!r}")
                    add_to_panel(conn, username, pid)
                    cli_audit(conn, "panel.add", f"user/{user_id}/panel", {}, patient_id=pid)
        except BootstrapError as exc:
            cli_audit(conn, "user.create", None, {"username": username, "error": str(exc)}, 400)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    click.echo(f"user {username} ({role}) ready")


@api.command("add-client")
@click.argument("client_id")
@click.option(
    "--scope",
    required=True,
    help='SMART system scopes, e.g. "system/Observation.rs system/Patient.rs" (read-only).',
)
@click.option(
    "--panel-of",
    "panel_of",
    required=True,
    help="Clinician username: the client sees exactly this clinician's panel.",
)
def add_client(client_id: str, scope: str, panel_of: str) -> None:
    """Register (or re-key) an EHR system client; prints its secret once."""
    import psycopg

    from api.smart.clients import ClientError, register_client
    from homevitals.services.manager import endpoints

    with psycopg.connect(endpoints(load_settings()).database_url, autocommit=True) as conn:
        try:
            with conn.transaction():
                granted, secret = register_client(conn, client_id, scope, panel_of)
                cli_audit(
                    conn,
                    "client.register",
                    f"client/{client_id}",
                    {"scope": granted, "panel_of": panel_of},
                )
        except ClientError as exc:
            cli_audit(conn, "client.register", f"client/{client_id}", {"error": str(exc)}, 400)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    click.echo(f"client_id: {client_id}\nclient_secret: {secret}\nscope: {granted}")
    click.echo("The secret is shown only now; running add-client again replaces it.", err=True)


@api.command("revoke-client")
@click.argument("client_id")
def revoke_client_cmd(client_id: str) -> None:
    """Stop a system client at once (its unexpired tokens too)."""
    import psycopg

    from api.smart.clients import revoke_client
    from homevitals.services.manager import endpoints

    with psycopg.connect(endpoints(load_settings()).database_url, autocommit=True) as conn:
        with conn.transaction():
            revoked = revoke_client(conn, client_id)
            cli_audit(conn, "client.revoke", f"client/{client_id}", {}, 200 if revoked else 404)
        if not revoked:
            click.echo(f"error: no client {client_id!r}", err=True)
            sys.exit(2)
    click.echo(f"client {client_id} revoked")
