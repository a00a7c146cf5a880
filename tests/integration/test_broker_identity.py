"""A device can act only as itself: its client id is its authenticated identity, so no connection can close,
impersonate or wipe another device's session. One scenario per attack, in every auth mode, against the real
Mosquitto (after Mosquitto's own test/broker/01-connect-uname-password-success-no-tls.py style: one broker, raw
MQTT packets, one claim per test).

The attacker is sensor-a with its own valid credentials; the victim is sensor-b."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from conftest import client_tls_context, tls_connect
from generator.core.mqtt_wire import ConnectionClosed, MqttSession

ALL_MODES = ("mtls", "password", "mtls+password")
VICTIM, ATTACKER = "sensor-b", "sensor-a"
VICTIM_STATUS = f"devices/{VICTIM}/status"
VICTIM_COMMANDS = f"devices/{VICTIM}/cmd/#"


@contextlib.contextmanager
def connected(broker, client, *, client_id: str | None = None, clean_session: bool = True,
              will: tuple[str, bytes] | None = None) -> Iterator[MqttSession]:
    """An MQTT session as `client` (its cert and/or its own username and password) that asks for `client_id`."""
    sock = tls_connect(broker, client_tls_context(client))
    try:
        session = MqttSession(sock)
        code = session.connect(client_id or client.name, username=client.name if client.password else None,
                               password=client.password, clean_session=clean_session, will=will)
        assert code == 0, f"{client.name} was refused: CONNACK {code}"
        yield session
        session.disconnect()
    finally:
        sock.close()


def still_connected(session: MqttSession) -> bool:
    try:
        session.ping()
        return True
    except ConnectionClosed:
        return False


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_device_asking_for_another_devices_client_id_does_not_disconnect_it(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with connected(broker, project.client(VICTIM)) as victim:
        with connected(broker, project.client(ATTACKER), client_id=VICTIM) as attacker:
            assert still_connected(attacker)
            assert still_connected(victim), f"{ATTACKER} took over {VICTIM}'s connection"
    log = broker.log_text()
    assert f"Client {VICTIM} already connected, closing old connection" not in log
    assert f" as {ATTACKER} (" in log      # the broker named the attacker by its own identity


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_device_asking_for_another_devices_client_id_does_not_fire_its_will(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with connected(broker, project.client("backend")) as backend, \
            connected(broker, project.client(VICTIM), will=(VICTIM_STATUS, b"offline")):
        backend.subscribe([(VICTIM_STATUS, 1)])
        with connected(broker, project.client(ATTACKER), client_id=VICTIM):
            backend.ping()  # a will is routed before the taker-over's CONNACK: it would be here by now
            assert [m.payload for m in backend.received if m.topic == VICTIM_STATUS] == []


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_device_asking_for_another_devices_client_id_does_not_wipe_its_queued_commands(auth, broker_project,
                                                                                        start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with connected(broker, project.client(VICTIM), clean_session=False) as victim:
        victim.subscribe([(VICTIM_COMMANDS, 1)])
    with connected(broker, project.client("backend")) as backend:        # the victim is offline: queued for it
        backend.publish(f"devices/{VICTIM}/cmd/open", b"queued while offline", qos=1)
    with connected(broker, project.client(ATTACKER), client_id=VICTIM, clean_session=True):
        pass
    with connected(broker, project.client(VICTIM), clean_session=False) as victim:
        victim.ping()
        assert victim.session_present, f"{VICTIM}'s persistent session was wiped"
        assert [m.payload for m in victim.received] == [b"queued while offline"]
