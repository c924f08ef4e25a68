"""Dependencies point one way (docs/ARCHITECTURE.md): this test fails when an import
crosses a layer the wrong way or reaches into another package's private modules.

Every import is checked, including those inside functions (a lazy import is still a
dependency), by reading the sources, not by importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package -> the packages of ours it may import.  Anything not listed is refused.
ALLOWED: dict[str, set[str]] = {
    "device_profiles": set(),
    "readings": {"device_profiles"},
    "gateway": {"readings", "device_profiles"},
    "simulators": {"readings", "device_profiles"},
    "ingest": {"readings", "device_profiles"},
    "analytics": {"readings", "device_profiles"},
    "api": {"analytics", "ingest", "readings", "device_profiles"},
    "homevitals": {
        "api",
        "analytics",
        "ingest",
        "gateway",
        "simulators",
        "readings",
        "device_profiles",
    },
}
# Packages whose modules others may not name: they import the package's public face.
FACE_ONLY = {"readings"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    bad: list[str] = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top not in ALLOWED or top == package:
                continue
            where = f"{path.relative_to(REPO)}:{line}: {module}"
            if top not in ALLOWED[package]:
                bad.append(f"{where} ({package} may not depend on {top})")
            elif top in FACE_ONLY and module != top:
                bad.append(f"{where} (import through `{top}`'s public face)")
            elif any(part.startswith("_") for part in module.split(".")[1:]):
                bad.append(f"{where} (private module of {top})")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    assert violations(package) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_package_has_a_public_face(package: str) -> None:
    init = ast.parse((REPO / package / "__init__.py").read_text())
    names = [
        target.id
        for node in init.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert "__all__" in names, f"{package}/__init__.py declares no __all__"


def test_the_checker_sees_a_wrong_way_import(tmp_path: Path) -> None:
    """The test can fail: an ingest -> gateway import is reported."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from gateway.sync import RecordBuffer\n")
    assert imports_of(module) == [(2, "gateway.sync")]
