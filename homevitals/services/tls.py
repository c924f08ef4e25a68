"""A private certificate authority and a server certificate for the local broker.

Generated once into the state directory with the ``openssl`` command (Debian's openssl
package); gateways are given the CA file to verify the broker.  The CA key never leaves
the state directory and is never committed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from homevitals.services.errors import SETUP_HINT, ServiceError
from homevitals.services.system import require_binary

DAYS = 825  # the longest validity clients accept for a server certificate


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str) -> None:
    binary = require_binary("openssl", [Path("/usr/bin/openssl")])
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ServiceError(f"openssl {args[0]} failed: {proc.stderr.strip()}", SETUP_HINT)


def ensure_server_certificate(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """CA and server certificate (SAN: ``host`` and localhost), created if missing."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    if all(p.is_file() for p in (files.ca_cert, files.server_cert, files.server_key)):
        return files
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    ext = directory / "server.ext"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(ca_key), "-out", str(files.ca_cert), "-days", str(DAYS),
             "-subj", "/CN=HomeVitals local CA")  # fmt: skip
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(files.server_key), "-out", str(csr), "-subj", f"/CN={host}")  # fmt: skip
    ext.write_text(
        f"subjectAltName = IP:{host}, DNS:localhost\n"
        "extendedKeyUsage = serverAuth\nkeyUsage = digitalSignature, keyEncipherment\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(files.server_cert), "-days", str(DAYS),
             "-extfile", str(ext))  # fmt: skip
    csr.unlink(missing_ok=True)
    ext.unlink(missing_ok=True)
    for key in (ca_key, files.server_key):
        key.chmod(0o600)
    return files
