"""scripts/: the Debian mirror the set-up takes TimescaleDB's source from, and the lock's
bootstrap pin.  Plain tests, no services."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def _mirror_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "debian_mirror", REPO / "scripts/debian_mirror.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _apt(tmp_path: Path, sources_list: str = "", **sources: str) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(sources_list)
    for name, text in sources.items():
        (tmp_path / "sources.list.d" / f"{name}.sources").write_text(text)
    return tmp_path


def test_deb822_local_mirror_is_used(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        debian="""Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# a comment
URIs: http://mirror.clinic.local/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /etc/apt/keyrings/clinic.gpg
""",
    )
    assert _mirror_module().main("bookworm", apt) == (
        "http://mirror.clinic.local/debian",
        "/etc/apt/keyrings/clinic.gpg",
    )


def test_one_line_entry_with_options(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        "# deb http://old.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=arm64 signed-by=/k.gpg] http://raspi.mirror/debian bookworm main contrib\n",
    )
    assert _mirror_module().main("bookworm", apt) == ("http://raspi.mirror/debian", "/k.gpg")


def test_disabled_or_missing_entries_fall_back_to_debian(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path, debian="Types: deb\nURIs: http://x/debian\nSuites: bookworm\nEnabled: no\n"
    )
    module = _mirror_module()
    assert module.main("bookworm", apt) == module.DEFAULT


def test_bootstrap_pin_is_the_locked_uv() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (uv,) = [p for p in lock["package"] if p["name"] == "uv"]
    bootstrap = (REPO / "requirements/bootstrap.txt").read_text()
    assert f"uv=={uv['version']} " in bootstrap
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["tool"]["uv"]["required-version"] == f"=={uv['version']}"
