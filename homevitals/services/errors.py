"""Errors the service manager reports to a person, naming the missing piece and the fix."""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A local service could not be created or started; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)


SETUP_HINT = "run `make setup` (scripts/setup.sh, as root or with sudo) on Debian 12/13"
