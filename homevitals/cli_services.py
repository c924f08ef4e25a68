"""``homevitals services``: the project-local PostgreSQL+TimescaleDB and Mosquitto."""

from __future__ import annotations

import sys

import click

from homevitals.cli import echo_json
from homevitals.config import load_settings
from homevitals.services.errors import ServiceError


@click.group()
def services() -> None:
    """Start, stop and inspect the project-local database and broker."""


@services.command()
def up() -> None:
    """Create (first time) and start PostgreSQL+TimescaleDB and Mosquitto; migrate the schema.

    Idempotent.  Services named by HOMEVITALS_DATABASE_URL / HOMEVITALS_MQTT_URL are used
    as they are and not started.
    """
    from homevitals.services.manager import up as services_up

    try:
        found = services_up(load_settings())
    except ServiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"database:    {found.database_url}")
    click.echo(f"timescaledb: {found.timescaledb_version} ({found.timescaledb_edition} edition)")
    click.echo(f"mqtt:        {found.mqtt_url}")
    settings = load_settings()
    if settings.uses_local_broker:
        from homevitals.services.manager import local_mosquitto

        broker = local_mosquitto(settings)
        click.echo(f"mqtts:       127.0.0.1:{settings.mqtt_tls_port} (CA {broker.ca_file})")


@services.command()
def down() -> None:
    """Stop exactly the local services this project started."""
    from homevitals.services.manager import down as services_down

    stopped = services_down(load_settings())
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@services.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Report whether the local services run, their ports and the TimescaleDB edition."""
    from homevitals.services.manager import status as services_status

    report = services_status(load_settings())
    if as_json:
        echo_json(report)
        return
    for name, info in report.items():
        assert isinstance(info, dict)
        state = (
            "running"
            if info.get("running")
            else ("external" if not info.get("local") else "stopped")
        )
        extra = ""
        if info.get("timescaledb_edition"):
            extra = f" timescaledb {info['timescaledb_version']} ({info['timescaledb_edition']})"
        click.echo(
            f"{name:11s} {state} port={info.get('port', '-')} pid={info.get('pid', '-')}{extra}"
        )


@services.command("gateway-credentials")
@click.argument("gateway_id")
@click.option("--tls", is_flag=True, help="The URL of the TLS listener (give the gateway the CA).")
def gateway_credentials(gateway_id: str, tls: bool) -> None:
    """Provision GATEWAY_ID's broker account (username = gateway id) and print its URL.

    Idempotent: the same gateway gets the same password again.  The account may publish
    only that gateway's readings, events and status and read only its receipts.  The
    broker's own accounts (anything named ``homevitals-...``) are refused.
    """
    from homevitals.services.manager import local_mosquitto
    from homevitals.services.mosquitto import check_gateway_id

    settings = load_settings()
    try:
        check_gateway_id(gateway_id)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if not settings.uses_local_broker:
        click.echo(
            "error: HOMEVITALS_MQTT_URL names an external broker: provision the account"
            " there (username = gateway id; ACLs in docs/wire-format.md)",
            err=True,
        )
        sys.exit(2)
    broker = local_mosquitto(settings)
    if not broker.base.is_dir():
        click.echo("error: the local broker was never set up: homevitals services up", err=True)
        sys.exit(2)
    url = broker.provision_gateway(gateway_id)
    if tls:
        url = broker.url_for(gateway_id, tls=True)
        click.echo(f"# CA: {broker.ca_file}", err=True)
    click.echo(url)
