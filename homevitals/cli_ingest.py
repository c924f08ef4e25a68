"""``homevitals ingest``, ``status``, ``deadletters``, ``patients`` and ``import``."""

from __future__ import annotations

import fcntl
import secrets
import socket
import sys
from pathlib import Path
from typing import IO

import click

from homevitals.cli import echo_json, settings_endpoints
from homevitals.config import load_settings


def ingest_group(state_dir: Path) -> str:
    """The installation's shared-subscription group: not guessable by a hub.

    Mosquitto grants any client a ``$share/<group>/...`` subscription and applies the read
    ACL only when delivering, so a hub subscribed in ingest's group takes (and the broker
    then drops) its share of every hub's messages; receipts make them come back, late.
    A secret group name leaves such a hub alone in a group of its own."""
    from homevitals.services.system import read_or_create_secret

    return "ingest-" + read_or_create_secret(state_dir / "secrets" / "ingest_group", 8).replace(
        "_", ""
    ).replace("-", "")


@click.group()
def ingest() -> None:
    """The MQTT -> TimescaleDB ingest service."""


@ingest.command("run")
@click.option(
    "--group",
    envvar="HOMEVITALS_INGEST_GROUP",
    default=None,
    help="Shared-subscription group.  Default: 'ingest-' and a secret kept in the state"
    " directory (secrets/ingest_group), the same for every worker of this installation; a"
    " hub that joined a guessable group would take its share of every hub's messages.",
)
@click.option(
    "--batch", "max_batch", default=500, show_default=True, help="Max messages per DB batch."
)
@click.option("--max-wait", default=0.05, show_default=True, help="Max seconds to fill a batch.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics here.")
@click.option(
    "--progress-every",
    default=60.0,
    show_default=True,
    help="Seconds between INFO lines with the readings stored since the last one.",
)
@click.option(
    "--client-id",
    default=None,
    help="MQTT client id. Default: hv-ingest-<host>-<slot>, the lowest slot free on this host.",
)
@click.option(
    "--session-expiry",
    default=0,
    show_default=True,
    help="MQTT session expiry (s). 0: the session and its share of the subscription end with"
    " the connection, so a stopped worker strands nothing; gateways re-send what ingest never"
    " confirmed (receipts).  Only while gateways older than receipts (homevitals.readings/1)"
    " remain may a longer expiry help a restarted worker get its unacknowledged messages back.",
)
def run(
    group: str | None,
    max_batch: int,
    max_wait: float,
    duration: float | None,
    metrics_port: int | None,
    progress_every: float,
    client_id: str | None,
    session_expiry: int,
) -> None:
    """Consume gateway messages (MQTT 5 shared subscription) and store readings exactly once.

    Start several to share the load; each acknowledges a message only after its
    readings are committed.
    """
    from homevitals.services.manager import mqtt_ca_file
    from ingest.service import IngestConfig, run_worker

    found = settings_endpoints()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    settings = load_settings()
    if group is None:
        group = ingest_group(settings.state_dir)
    slot = None
    if client_id is None:
        slot, client_id = _claim_slot(settings.state_dir / "ingest")
    totals = run_worker(
        IngestConfig(
            found.database_url,
            found.mqtt_url,
            group=group,
            max_batch_messages=max_batch,
            max_wait_s=max_wait,
            retention_days=settings.retention_days,
            client_id=client_id,
            ca_file=mqtt_ca_file(settings),
            progress_every_s=progress_every,
            session_expiry_s=session_expiry,
        ),
        duration_s=duration,
    )
    click.echo(f"ingest stopped: {totals}")
    if slot is not None:
        slot.close()


def _claim_slot(directory: Path) -> tuple[IO[str], str]:
    """The lowest worker slot no live process on this host holds (an flock per slot)."""
    directory.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    for n in range(1024):
        handle = (directory / f"slot-{n}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        # Unguessable (a client reusing a connected client id makes Mosquitto close the
        # older connection); clean sessions make a new id per start free.
        return handle, f"hv-ingest-{host}-{n}-{secrets.token_hex(8)}"
    raise click.ClickException("no free ingest slot")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Readings ingested per kind, dead letters, devices, gateways and flags."""
    from ingest.status import ingest_counts

    counts = ingest_counts(settings_endpoints().database_url)
    if as_json:
        echo_json(counts)
        return
    click.echo("readings:     " + ", ".join(f"{k} {v}" for k, v in counts["readings"].items()))
    by_kind = ", ".join(f"{k} {v}" for k, v in counts["unattributed_by_kind"].items() if v)
    click.echo(f"unattributed: {counts['unattributed']}" + (f" ({by_kind})" if by_kind else ""))
    click.echo(
        f"dead letters: {counts['dead_letters']['open']} open ({counts['dead_letters']['total']} total)"
    )
    click.echo(f"devices:      {counts['devices']}; gateways {counts['gateways']}")
    custody = counts["custody"]
    click.echo(
        f"custody:      {custody['held']} pairings held for a clinician,"
        f" {custody['refused_readings']} readings refused (open dead letters)"
    )
    click.echo(
        "flags:        " + (", ".join(f"{k} {v}" for k, v in counts["flags"].items()) or "none")
    )


@click.group()
def deadletters() -> None:
    """Inspect and re-process messages that could not be ingested."""


@deadletters.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--all", "include_all", is_flag=True, help="Include already re-processed ones.")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(limit: int, include_all: bool, as_json: bool) -> None:
    """List dead letters, newest first, with their reasons."""
    import dataclasses

    import psycopg

    from ingest.deadletters import list_dead_letters

    with psycopg.connect(settings_endpoints().database_url) as conn:
        rows = list_dead_letters(conn, limit, include_all)
    if as_json:
        echo_json([dataclasses.asdict(r) for r in rows])
        return
    for r in rows:
        click.echo(f"{r.id:6d} {r.received_at:%Y-%m-%d %H:%M:%S} {r.topic} {r.reason}")


@deadletters.command("reprocess")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every open dead letter.")
def reprocess_cmd(ids: tuple[int, ...], everything: bool) -> None:
    """Run dead letters through ingest again (after a fix); failures stay parked."""
    import psycopg

    from ingest.deadletters import reprocess
    from ingest.registry import BindingCache

    if not ids and not everything:
        click.echo("error: give dead-letter ids or --all", err=True)
        sys.exit(2)
    with psycopg.connect(settings_endpoints().database_url, autocommit=True) as conn:
        done, again = reprocess(conn, BindingCache(), ids=list(ids) if ids else None)
    click.echo(f"re-processed {done}; rejected again {again}")


@deadletters.command("redecode")
@click.option("--id", "ids", multiple=True, type=int, help="Dead-letter id (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every open malformed-record dead letter.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def redecode_cmd(ids: tuple[int, ...], everything: bool, dry_run: bool, as_json: bool) -> None:
    """Decode device records the gateway could not parse, with today's parsers.

    What decodes now is ingested as the gateway would have sent it (same reading ids)
    and its dead letter is marked; what still fails stays open, with the reason.
    """
    import psycopg
    from rich.console import Console
    from rich.table import Table

    from homevitals.redecode import redecode
    from ingest.registry import BindingCache

    if bool(ids) == everything:
        raise click.UsageError("give --id N (repeatable) or --all")
    with psycopg.connect(settings_endpoints().database_url, autocommit=True) as conn:
        results = redecode(conn, BindingCache(), list(ids) if ids else None, dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "dead_letters": [r.to_json() for r in results]})
        return
    title = "dry run: nothing written" if dry_run else None
    table = Table("id", "device", "status", "readings", "detail", title=title)
    for r in results:
        readings = "\n".join(
            f"{x.time:%Y-%m-%d %H:%M:%S}Z {', '.join(f'{k}={v:g}' for k, v in x.values.items())}"
            for x in r.readings
        )
        table.add_row(str(r.dead_letter), r.device or "", r.status, readings, r.detail)
    # Piped output (scripts, tests): wide enough that nothing is cut.
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


@click.group()
def patients() -> None:
    """Enrol patients and bind gateways (operator tools; the API does the same)."""


@patients.command("add")
@click.argument("external_id")
@click.option("--gateway", "gateways", multiple=True, help="Gateway id to bind to this patient.")
@click.option("--timezone", default="America/New_York", show_default=True)
@click.option("--name", default=None, help="'Given Family'.")
def add_patient(
    external_id: str, gateways: tuple[str, ...], timezone: str, name: str | None
) -> None:
    """Create (or update) a patient and attach gateways; their devices get bound.

    A hub attached to another patient, or a service account's name, is refused (the
    whole command changes nothing); what it does is on the audit log as ``cli:<login>``."""
    import psycopg

    from homevitals.cli_api import cli_audit
    from ingest.patients import GatewayAttachError, enroll_patient

    url = settings_endpoints().database_url
    try:
        patient_id = enroll_patient(url, external_id, list(gateways), timezone, name)
    except GatewayAttachError as exc:
        with psycopg.connect(url, autocommit=True) as conn:
            cli_audit(
                conn,
                "patient.enroll",
                f"patient/{external_id}",
                {"gateways": list(gateways), "refused": str(exc)},
                status=409,
            )
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    with psycopg.connect(url, autocommit=True) as conn:
        cli_audit(
            conn,
            "patient.enroll",
            f"patient/{patient_id}",
            {"external_id": external_id, "gateways": list(gateways)},
            patient_id=patient_id,
        )
    click.echo(f"patient {external_id} = id {patient_id}")


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["generic", "dexcom", "libreview"]),
    required=True,
    help="generic id,time,glucose CSV; Dexcom Clarity export; LibreView export.",
)
@click.option(
    "--patient",
    default=None,
    help="Patient external id (required for dexcom/libreview; generic CSV without an id column).",
)
@click.option(
    "--timezone",
    default=None,
    help="IANA time zone for patients this import creates (an existing patient's zone wins).",
)
def import_cmd(path: Path, fmt: str, patient: str | None, timezone: str | None) -> None:
    """Bulk-import historical glucose data through the ingest validation and write path.

    Re-importing a file stores nothing twice; bad rows go to the dead letters.  Prints a
    JSON report (docs/import.md).
    """
    from ingest.bulk_import import ImportFileError, import_file

    try:
        report = import_file(
            settings_endpoints().database_url, path, fmt, patient, timezone=timezone
        )
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    echo_json(report)
