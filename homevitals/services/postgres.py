"""A project-local PostgreSQL cluster with TimescaleDB preloaded.

Data directory and socket live under ``<state>/pg``; it listens on 127.0.0.1 on its own
port, so a system PostgreSQL is never disturbed.  As root the cluster runs as the
``postgres`` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from homevitals.services.errors import SETUP_HINT, ServiceError
from homevitals.services.system import (
    chown_tree,
    ensure_traversable,
    pid_alive,
    read_or_create_secret,
    read_pid,
    run_as,
    service_user,
)

PG_ROOT = Path("/usr/lib/postgresql")
APP_ROLE = "homevitals"
APP_DATABASE = "homevitals"


def find_pg_bindir() -> Path:
    """The newest installed PostgreSQL whose lib dir holds timescaledb.so."""
    versions = sorted(
        (p for p in PG_ROOT.glob("*") if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
    )
    if not versions:
        raise ServiceError("PostgreSQL server is not installed", SETUP_HINT)
    for version in versions:
        if (version / "lib" / "timescaledb.so").is_file() and (
            version / "bin" / "initdb"
        ).is_file():
            return version / "bin"
    raise ServiceError(
        "TimescaleDB is not installed for PostgreSQL "
        + ", ".join(v.name for v in versions)
        + " (no timescaledb.so)",
        "on Debian 13: apt-get install postgresql-17-timescaledb; on Debian 12: "
        + SETUP_HINT
        + ", which builds it from the Debian source package",
    )


@dataclass(frozen=True, slots=True)
class PostgresStatus:
    running: bool
    pid: int | None
    url: str
    edition: str | None = None
    timescaledb_version: str | None = None


class LocalPostgres:
    def __init__(self, state_dir: Path, port: int) -> None:
        self.base = state_dir.resolve() / "pg"
        self.data = self.base / "data"
        self.run_dir = self.base / "run"
        self.log = self.base / "postgres.log"
        self.port = port
        self.user = service_user("postgres")
        self._secrets = state_dir.resolve() / "secrets"

    @property
    def password(self) -> str:
        return read_or_create_secret(self._secrets / "pg_app_password")

    @property
    def url(self) -> str:
        return (
            f"postgresql://{APP_ROLE}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/"
            f"{APP_DATABASE}"
        )

    def _superuser_conninfo(self, dbname: str = "postgres") -> str:
        # The superuser connects over the private socket with peer/trust-free scram.
        su_password = read_or_create_secret(self._secrets / "pg_superuser_password")
        return (
            f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} password={su_password}"
        )

    def _pg_ctl(self, *args: str) -> tuple[int, str]:
        bindir = find_pg_bindir()
        proc = run_as(self.user, [str(bindir / "pg_ctl"), "-D", str(self.data), *args])
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def init(self) -> None:
        if self.initialised():
            return
        bindir = find_pg_bindir()
        self.base.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        su_password = read_or_create_secret(self._secrets / "pg_superuser_password")
        pwfile = self.base / "initdb.pw"
        pwfile.write_text(su_password + "\n")
        ensure_traversable(self.base, self.user)
        chown_tree(self.base, self.user)
        proc = run_as(
            self.user,
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        )
        pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise ServiceError(f"initdb failed:\n{proc.stdout}{proc.stderr}", SETUP_HINT)
        conf = self.data / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write(
                "\n# HomeVitals project-local cluster\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.run_dir}'\n"
                "shared_preload_libraries = 'timescaledb'\n"
                "timescaledb.telemetry_level = off\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "max_wal_size = 4GB\n"
                "checkpoint_timeout = 15min\n"
            )

    def _set_port(self) -> None:
        conf = self.data / "postgresql.conf"
        text = conf.read_text()
        new = re.sub(r"(?m)^port = \d+$", f"port = {self.port}", text)
        if new != text:
            conf.write_text(new)

    def pid(self) -> int | None:
        pid = read_pid(self.data / "postmaster.pid")
        return pid if pid is not None and pid_alive(pid) else None

    def start(self) -> None:
        self.init()
        if self.pid() is not None:
            return
        self._set_port()
        code, out = self._pg_ctl("-l", str(self.log), "-w", "-t", "60", "start")
        if code != 0:
            tail = self.log.read_text()[-2000:] if self.log.is_file() else ""
            raise ServiceError(f"PostgreSQL did not start: {out}\n{tail}", f"see {self.log}")
        self._wait_ready()
        self._bootstrap()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self._superuser_conninfo(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _bootstrap(self) -> None:
        """Application role and database, and the extension (checked to load)."""
        with psycopg.connect(self._superuser_conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        psycopg.sql.Identifier(APP_ROLE), psycopg.sql.Literal(self.password)
                    )
                )
            has_db = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)
            ).fetchone()
            if has_db is None:
                conn.execute(
                    psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        psycopg.sql.Identifier(APP_DATABASE), psycopg.sql.Identifier(APP_ROLE)
                    )
                )
        with psycopg.connect(self._superuser_conninfo(APP_DATABASE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def create_database(self, name: str) -> str:
        """A further database owned by the app role (tests use one per session)."""
        with psycopg.connect(self._superuser_conninfo(), autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Identifier(APP_ROLE)
                )
            )
        with psycopg.connect(self._superuser_conninfo(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.pid() is None:
            return
        code, out = self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop")
        if code != 0 and self.pid() is not None:
            raise ServiceError(f"PostgreSQL did not stop: {out}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def status(self) -> PostgresStatus:
        pid = self.pid()
        if pid is None:
            return PostgresStatus(False, None, self.url)
        edition, version = timescaledb_edition(self.url)
        return PostgresStatus(True, pid, self.url, edition, version)


def timescaledb_edition(url: str) -> tuple[str | None, str | None]:
    """('apache' | 'community', version) of the extension in the database at ``url``."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        if row is None:
            return None, None
        license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    license_name = license_row[0] if license_row else None
    edition = "community" if license_name == "timescale" else (license_name or "unknown")
    return edition, str(row[0])
