"""``homevitals audit``: the API's audit log (``verify``: its hash chain is intact)."""

from __future__ import annotations

import sys

import click

from homevitals.config import load_settings


@click.group()
def audit() -> None:
    """The audit log of every access to patient data and every administrative action."""


@audit.command("verify")
@click.option("--max-findings", type=click.IntRange(1, 10_000), default=50, show_default=True)
def verify_cmd(max_findings: int) -> None:
    """Recompute the audit log's hash chain; name every edited, deleted or inserted row.

    Exit status 0 when the chain is intact, 1 when it is not.  Record the printed head
    (position and hash) somewhere else: a later run that finds a different history up
    to that position proves a rewrite of the whole tail too.
    """
    import psycopg

    from api.core.audit_chain import verify
    from homevitals.services.manager import endpoints

    with psycopg.connect(endpoints(load_settings()).database_url, autocommit=True) as conn:
        report = verify(conn, max_findings)
    head = f"position {report.head_seq}, sha256 {report.head_hash.hex()}"
    if report.ok:
        click.echo(f"audit log intact: {report.rows} rows; head {head}")
        return
    for finding in report.findings:
        click.echo(f"{finding.kind}: {finding.message}")
    click.echo(
        f"audit log TAMPERED: {len(report.findings)} finding(s) in {report.rows} rows; head {head}",
        err=True,
    )
    sys.exit(1)
