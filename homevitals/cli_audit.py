"""``homevitals audit``: the API's audit log (``verify``: its hash chain is intact and
holds every anchor; ``anchor``: record the verified head outside the database)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from homevitals.config import load_settings

if TYPE_CHECKING:
    from api.core.audit_chain import Anchor, Report

ANCHORS_FILE = "audit-anchors.jsonl"


def default_anchors() -> Path:
    return load_settings().state_dir / ANCHORS_FILE


def _load_anchors(path: Path | None) -> list[Anchor]:
    from api.core.audit_chain import read_anchors

    if path is None or not path.exists():
        return []
    try:
        return read_anchors(path)
    except (OSError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def _verify(path: Path | None, max_findings: int) -> Report:
    import psycopg

    from api.core.audit_chain import verify
    from homevitals.services.manager import endpoints

    anchors = _load_anchors(path)
    with psycopg.connect(endpoints(load_settings()).database_url, autocommit=True) as conn:
        return verify(conn, max_findings, anchors)


def _head(report: Report) -> str:
    return f"position {report.head_seq}, sha256 {report.head_hash.hex()}"


def _fail(report: Report, what: str) -> None:
    for finding in report.findings:
        click.echo(f"{finding.kind}: {finding.message}")
    click.echo(
        f"audit log TAMPERED: {len(report.findings)} finding(s) in {report.rows} rows; head"
        f" {_head(report)}{what}",
        err=True,
    )
    sys.exit(1)


@click.group()
def audit() -> None:
    """The audit log of every access to patient data and every administrative action."""


_ANCHORS_HELP = (
    "anchors file (JSON lines from `homevitals audit anchor`); default"
    f" <state dir>/{ANCHORS_FILE} if it exists"
)


@audit.command("verify")
@click.option("--max-findings", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option(
    "--anchors", "anchors_path", type=click.Path(dir_okay=False, path_type=Path), help=_ANCHORS_HELP
)
def verify_cmd(max_findings: int, anchors_path: Path | None) -> None:
    """Recompute the audit log's hash chain; name every edited, deleted, inserted,
    backdated or reordered row, and every anchor the chain no longer holds.

    Exit status 0 when the chain is intact, 1 when it is not.  Without anchors (kept
    outside the database) a rewrite of a whole tail, or of the whole table, by the
    owner of the tables cannot be seen: run `homevitals audit anchor` regularly.
    """
    if anchors_path is not None and not anchors_path.exists():
        raise click.ClickException(f"{anchors_path}: no such anchors file")
    path = anchors_path or default_anchors()
    report = _verify(path, max_findings)
    if not report.ok:
        _fail(report, "")
    held = f"; {report.anchors} anchor(s) hold ({path})" if report.anchors else "; no anchors"
    click.echo(f"audit log intact: {report.rows} rows; head {_head(report)}{held}")


@audit.command("anchor")
@click.option(
    "--to",
    "to",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"append the anchor to this file (default <state dir>/{ANCHORS_FILE})",
)
@click.option(
    "--syslog/--no-syslog",
    default=True,
    show_default=True,
    help="also log the anchor to syslog (the journal on systemd hosts), facility authpriv",
)
def anchor_cmd(to: Path | None, syslog: bool) -> None:
    """Verify the chain (against the anchors already in the file), then record its head
    {seq, hash, id, at} outside the database: printed, appended to the anchors file and
    logged to syslog.  Ship these off the host; a later `verify` reports any anchored
    position that was rewritten and a chain that shrank below the newest anchor.

    Exit status 1 (nothing recorded) when the chain is not intact.
    """
    path = to or default_anchors()
    report = _verify(path, 50)
    if not report.ok:
        _fail(report, " (no anchor recorded)")
    line = report.anchor(datetime.now(UTC)).to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    if syslog:
        import syslog as sl

        sl.openlog("homevitals-audit", sl.LOG_PID, sl.LOG_AUTHPRIV)
        sl.syslog(sl.LOG_NOTICE, f"audit anchor {line}")
        sl.closelog()
    click.echo(line)
