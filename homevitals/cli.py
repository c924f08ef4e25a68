"""The ``homevitals`` command: one entry point for every role."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Any

import click


class LazyGroup(click.Group):
    """Sub-commands imported only when used, so ``homevitals --help`` stays fast and a
    component's dependencies load only for that component."""

    def __init__(
        self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(
    cls=LazyGroup,
    lazy={
        "services": ("homevitals.cli_services", "services"),
        "ingest": ("homevitals.cli_ingest", "ingest"),
        "deadletters": ("homevitals.cli_ingest", "deadletters"),
        "import": ("homevitals.cli_ingest", "import_cmd"),
        "status": ("homevitals.cli_ingest", "status"),
        "decode": ("homevitals.cli_decode", "decode"),
        "patients": ("homevitals.cli_ingest", "patients"),
        "simulate": ("homevitals.cli_simulate", "simulate"),
        "gateway": ("gateway.cli", "gateway"),
        "api": ("homevitals.cli_api", "api"),
        "audit": ("homevitals.cli_audit", "audit"),
        "demo": ("homevitals.demo", "demo"),
        "analytics": ("homevitals.cli_analytics", "analytics"),
    },
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option(
    "--log-level",
    envvar="HOMEVITALS_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level (overrides -v). Services run under systemd usually want INFO.",
)
@click.option(
    "--json-logs",
    envvar="HOMEVITALS_JSON_LOGS",
    is_flag=True,
    help="Logs as JSON lines on stderr (time, level, logger, message and each event's"
    " fields), for journald and log shippers.",
)
@click.version_option(package_name="homevitals")
def cli(verbose: int, log_level: str | None, json_logs: bool) -> None:
    """HomeVitals: remote patient monitoring from home BLE devices to the clinician.

    Settings come from HOMEVITALS_* environment variables (HOMEVITALS_DATABASE_URL,
    HOMEVITALS_MQTT_URL, HOMEVITALS_STATE_DIR, ...) and an optional homevitals.toml.
    """
    # One log set-up for every role; the gateway's, which also quiets bleak/dbus-fast.
    from readings import setup_logging

    level = log_level or logging.getLevelName(logging.WARNING - 10 * min(verbose, 2))
    setup_logging(level, json_lines=json_logs)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


def settings_endpoints() -> Any:
    # Server-side settings (pydantic) load only here: the hub's install has no pydantic.
    from homevitals.config import load_settings
    from homevitals.services.manager import endpoints

    return endpoints(load_settings())
