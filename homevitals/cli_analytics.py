"""``homevitals analytics``: the rule engine service and per-patient summaries."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from homevitals.cli import echo_json, settings_endpoints


@click.group()
def analytics() -> None:
    """Clinical metrics and the flags for review."""


@analytics.command("run")
@click.option("--interval", default=60.0, show_default=True, help="Seconds between full passes.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--once", is_flag=True, help="One full pass, then exit.")
def run(interval: float, duration: float | None, once: bool) -> None:
    """Evaluate rules for patients with new data (urgent rules within seconds of ingest,
    via LISTEN/NOTIFY) and keep the review queue current."""
    from analytics.runner import run as run_analytics

    report = run_analytics(settings_endpoints().database_url, interval, duration, once)
    click.echo(
        f"analytics: {report.patients} patient evaluations, {report.raised} flags raised,"
        f" {report.updated} updated, {report.cleared} cleared"
    )


def _parse_when(text: str | None, default: datetime) -> datetime:
    if text is None:
        return default
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO date/time (e.g. 2026-11-01)") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@analytics.command("summary")
@click.option("--patient", required=True, help="Patient id used at import or enrollment.")
@click.option(
    "--from", "start", default=None, help="Start (ISO date/time, UTC); default 14 days ago."
)
@click.option("--to", "end", default=None, help="End (ISO date/time, UTC); default now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(patient: str, start: str | None, end: str | None, as_json: bool) -> None:
    """Glucose and blood-pressure summary of one patient for any period."""
    import psycopg

    from analytics.store import resolve_patient
    from analytics.summary import bp_summary, glucose_summary

    now = datetime.now(UTC)
    until = _parse_when(end, now)
    since = _parse_when(start, until - timedelta(days=14))
    if since >= until:
        click.echo("error: --from must be before --to", err=True)
        sys.exit(2)
    with psycopg.connect(settings_endpoints().database_url) as conn:
        patient_id = resolve_patient(conn, patient)
        if patient_id is None:
            click.echo(f"error: no patient {patient!r}", err=True)
            sys.exit(1)
        report = {
            "patient": patient,
            "from": since.isoformat(),
            "to": until.isoformat(),
            "glucose": glucose_summary(conn, patient_id, since, until).model_dump(mode="json"),
            "blood_pressure": bp_summary(conn, patient_id, since, until).model_dump(mode="json"),
        }
    if as_json:
        echo_json(report)
    else:
        import json

        click.echo(json.dumps(report, indent=2, default=str))
