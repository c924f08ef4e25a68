"""Print the URI and keyring of the Debian archive this machine's apt already uses.

setup.sh adds a source-only entry for TimescaleDB from the same mirror (a local or
corporate mirror included) instead of a hard-coded host.  Reads both formats:
one-line ``sources.list`` entries and deb822 ``.sources`` files.  Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

APT = Path("/etc/apt")
DEFAULT = ("http://deb.debian.org/debian", "/usr/share/keyrings/debian-archive-keyring.gpg")


def entries(apt: Path) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] not in ("deb", "deb-src"):
                continue
            options, rest = {}, words[1:]
            if rest and rest[0].startswith("["):  # deb [signed-by=... arch=...] uri suite ...
                end = next(i for i, w in enumerate(rest) if w.endswith("]"))
                for opt in " ".join(rest[: end + 1]).strip("[] ").split():
                    key, _, value = opt.partition("=")
                    options[key.lower()] = value
                rest = rest[end + 1 :]
            if len(rest) >= 2:
                found.append(
                    {
                        "types": words[0],
                        "uris": rest[0],
                        "suites": rest[1],
                        "signed-by": options.get("signed-by", ""),
                    }
                )
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() != "no" and "uris" in fields:
                found.append(fields)
    return found


def main(codename: str, apt: Path = APT) -> tuple[str, str]:
    for entry in entries(apt):
        if "deb" not in entry.get("types", "").split():
            continue
        if codename in entry.get("suites", "").split():  # the release suite, not -security
            uri = entry["uris"].split()[0]
            keyring = entry.get("signed-by", "")
            # An inline key block (deb822) cannot be copied into one line: use the archive's.
            return uri, keyring if keyring.startswith("/") else DEFAULT[1]
    return DEFAULT


if __name__ == "__main__":
    uri, keyring = main(sys.argv[1])
    print(uri, keyring)
