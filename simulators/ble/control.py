"""The control channel of a running simulated device: JSON lines over a unix socket.

Each request is one JSON object on one line; the reply is one JSON object on one line,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.  Commands:

``{"cmd": "add", "readings": [<reading>, ...]}``
    store new readings (format: :mod:`simulators.ble.readings`); reply ``ids``: the
    glucose sequence numbers (or BP memory positions) given to them.
``{"cmd": "status"}``
    records, unsent (BP), battery, clock skew, device time, quirks.
``{"cmd": "battery", "level": 15}``
    set the battery level (notified to a subscribed central).
``{"cmd": "set_skew", "seconds": 3600}``
    move the device clock.
``{"cmd": "disconnect"}``
    drop the link from the device side.
``{"cmd": "insert_strip"}``
    a strip goes in: devices with ``DROPS_LINK_ON_STRIP_INSERT`` drop the link.

From a shell: ``python -m simulators.ble control <socket> status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["ControlError", "send_command", "send_command_async", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 16 * 1024 * 1024


class ControlError(RuntimeError):
    """The device refused a control command."""


async def serve(path: Path, handler: Handler) -> asyncio.Server:
    path.unlink(missing_ok=True)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply: dict[str, Any]
                try:
                    command = json.loads(line)
                    if not isinstance(command, dict):
                        raise ValueError("a command is a JSON object")
                    reply = {"ok": True, **await handler(command)}
                except (ValueError, KeyError, TypeError) as e:
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_unix_server(client, path=str(path), limit=MAX_LINE)


def _check(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", reply)))
    return reply


def send_command(path: Path, command: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one command and wait for its reply (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(command).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError("device closed the control channel")
            buf += chunk
    reply = json.loads(buf)
    if not isinstance(reply, dict):
        raise ControlError(f"unexpected reply {reply!r}")
    return _check(reply)


async def send_command_async(
    path: Path, command: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        try:
            writer.write(json.dumps(command).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    if not line:
        raise ControlError("device closed the control channel")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ControlError(f"unexpected reply {reply!r}")
    return _check(reply)
