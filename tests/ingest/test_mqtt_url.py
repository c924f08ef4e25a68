"""The one broker-URL parser (gateway, ingest, fleet simulator)."""

from __future__ import annotations

import pytest

from readings import MqttUrlError, parse_mqtt_url


def test_credentials_are_unquoted_and_ports_default_by_scheme() -> None:
    a = parse_mqtt_url("mqtt://gw%2D1:p%40ss@127.0.0.1:18830")
    assert (a.host, a.port, a.tls, a.username, a.password) == (
        "127.0.0.1",
        18830,
        False,
        "gw-1",
        "p@ss",
    )
    assert parse_mqtt_url("mqtts://broker").port == 8883
    assert parse_mqtt_url("mqtts://broker").tls
    assert parse_mqtt_url("mqtt://broker").port == 1883


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://x", "must start with"), ("mqtt://", "no host"), ("mqtt://h:99999", "bad port")],
)
def test_bad_urls_say_why(url: str, message: str) -> None:
    with pytest.raises(MqttUrlError, match=message):
        parse_mqtt_url(url)
