"""SMART v2 scopes (``system/Observation.rs``) as this read-only FHIR server grants them.

A scope set maps a resource type (or ``*``) to permissions drawn from ``cruds``.  Only
``r`` (read) and ``s`` (search) are ever granted: the facade has no write interactions.
SMART v1 spellings are read as their v2 equivalents (``.read`` = ``.rs``).  Scopes with
query parameters (``?category=...``) are not supported and are never granted.
"""

from __future__ import annotations

import re

RESOURCES = ("Patient", "Device", "Observation", "Flag")
GRANTABLE = "rs"
_ORDER = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
# RFC 6749 3.3 scope-token characters; anything else makes the request malformed.
_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_SYSTEM = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)$")

ScopeSet = dict[str, frozenset[str]]


class ScopeError(ValueError):
    """A scope string that is not syntactically a list of scope tokens."""


def _perms(raw: str) -> frozenset[str] | None:
    if raw in _V1:
        return frozenset(_V1[raw])
    if all(c in _ORDER for c in raw) and list(raw) == sorted(raw, key=_ORDER.index):
        return frozenset(raw)
    return None


def parse(text: str) -> ScopeSet:
    """The system scopes of a space-separated scope string this server can grant; other
    well-formed tokens (``openid``, ``patient/...``, unknown types) are dropped."""
    out: dict[str, set[str]] = {}
    for token in text.split():
        if not _TOKEN.match(token):
            raise ScopeError(f"malformed scope {token[:80]!r}")
        match = _SYSTEM.match(token)
        perms = _perms(match[2]) if match else None
        if match is None or perms is None or match[1] not in (*RESOURCES, "*"):
            continue
        granted = perms & frozenset(GRANTABLE)
        if granted:
            out.setdefault(match[1], set()).update(granted)
    return {res: frozenset(p) for res, p in out.items()}


def intersect(requested: ScopeSet, registered: ScopeSet) -> ScopeSet:
    """What a client gets: each requested scope narrowed to what its registration allows
    (``*`` on either side stands for every resource type)."""
    out: dict[str, set[str]] = {}
    for res, perms in requested.items():
        for reg, allowed in registered.items():
            if reg in (res, "*") or res == "*":
                common = perms & allowed
                if common:
                    out.setdefault(res if reg == "*" else reg, set()).update(common)
    # A narrower entry under a wildcard adds nothing; keep the set canonical.
    wild = out.get("*", set())
    return {r: frozenset(p) for r, p in out.items() if r == "*" or not p <= wild}


def allows(scopes: ScopeSet, resource: str, interaction: str) -> bool:
    return interaction in scopes.get(resource, frozenset()) | scopes.get("*", frozenset())


def render(scopes: ScopeSet) -> str:
    """Canonical text: sorted, permissions in ``cruds`` order."""
    return " ".join(
        f"system/{res}.{''.join(c for c in _ORDER if c in perms)}"
        for res, perms in sorted(scopes.items())
    )


def supported() -> list[str]:
    """Every scope this server can grant (for the SMART configuration document)."""
    return [f"system/{res}.{p}" for res in (*RESOURCES, "*") for p in ("rs", "r", "s")]
