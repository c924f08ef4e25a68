"""Running service processes as an unprivileged user, and small process helpers."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from homevitals.services.errors import SETUP_HINT, ServiceError


def is_root() -> bool:
    return os.geteuid() == 0


def service_user(name: str) -> str | None:
    """The OS user a service runs as: ``name`` when we are root (PostgreSQL refuses root),
    else None (run as ourselves)."""
    if not is_root():
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise ServiceError(f"OS user {name!r} does not exist", SETUP_HINT) from exc
    return name


def run_as(
    user: str | None, argv: Sequence[str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    cmd = list(argv) if user is None else ["runuser", "-u", user, "--", *argv]
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def ensure_traversable(path: Path, user: str | None) -> list[Path]:
    """Let ``user`` reach ``path``: add o+x (search only, not read) to ancestors lacking it,
    e.g. a 0700 ``mktemp -d`` checkout.  Returns the directories changed."""
    if user is None:
        return []
    changed: list[Path] = []
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
            changed.append(parent)
    return changed


def require_binary(name: str, candidates: Sequence[Path] = ()) -> Path:
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} is not installed", SETUP_HINT)
    return Path(found)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_or_create_secret(path: Path, nbytes: int = 24) -> str:
    """A generated secret kept in the state directory (mode 0600), never in the repo."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
