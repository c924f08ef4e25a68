"""Waiting in tests: on the event itself (a row, a log line, a SUBACK), never a fixed sleep.

One poller for every test (``wait_until``, ``await wait_until_async``), a SUBACK hook for
paho clients (``suback_event``) and a CONNACK probe (``broker_accepts``).  Importable from any test directory (``tests/`` is on the
import path through its conftest).  A timeout is a failure with the caller's description,
not a ``False`` to forget to assert.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from readings import parse_mqtt_url

__all__ = ["broker_accepts", "suback_event", "wait_until", "wait_until_async"]

T = TypeVar("T")

Describe = str | Callable[[], object]


def _describe(what: Describe) -> str:
    return str(what() if callable(what) else what)


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    what: Describe = "",
    step: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    After ``timeout`` seconds fail the test with ``what`` (a string, or a callable for
    details gathered only then: a log tail, the rows seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting: {_describe(what)}", pytrace=True)
        time.sleep(step)


async def wait_until_async(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    what: Describe = "",
    step: float = 0.01,
) -> T:
    """``wait_until`` inside an event loop (polls with ``asyncio.sleep``, so the loop's
    other tasks run meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting: {_describe(what)}", pytrace=True)
        await asyncio.sleep(step)


def broker_accepts(url: str, timeout: float = 5.0) -> bool:
    """True when the broker at ``url`` answers a CONNECT with these credentials with a
    successful CONNACK (a freshly provisioned account is live: Mosquitto applies a
    password file on SIGHUP, asynchronously)."""
    target = parse_mqtt_url(url)
    answers: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(not reason.is_failure)
    try:
        client.connect(target.host, target.port, keepalive=10)
        deadline = time.monotonic() + timeout
        while not answers and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    except OSError:
        return False
    finally:
        client.disconnect()
    return bool(answers) and answers[0]


def suback_event(client: mqtt.Client) -> threading.Event:
    """An event set when the broker acknowledges a SUBSCRIBE of ``client`` (SUBACK).

    Install before the client connects.  Keeps any ``on_subscribe`` the client had."""
    acked = threading.Event()
    previous = client.on_subscribe

    def on_subscribe(*args: Any) -> None:
        if previous is not None:
            previous(*args)
        acked.set()

    client.on_subscribe = on_subscribe
    return acked
