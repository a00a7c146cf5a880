"""Following a device's log over MQTT: a session as LOGS_IDENTITY (its own client id: an operator's mosquitto_sub or
the backend is never kicked off), subscribed to the device's log topic, each message one line of its serial log."""

from __future__ import annotations

import contextlib
import socket
from typing import Callable, Iterator

from generator.core.errors import UserError
from generator.core.mqtt_wire import ConnectionClosed, MqttSession
from generator.doctor.identity_session import gen_identity_session
from generator.doctor.probes import Address
from generator.spec.contract import LOGS_IDENTITY
from generator.spec.model import Device, Spec

KEEPALIVE_S = 30
READ_TIMEOUT_S = 10.0          # a PINGREQ after this long without traffic keeps the session (and Ctrl-C) alive


@contextlib.contextmanager
def logs_session(spec: Spec, broker: Address | None = None) -> Iterator[MqttSession]:
    """An MQTT session as LOGS_IDENTITY (spec's broker.host:port, or `broker`, verified as broker.host)."""
    with gen_identity_session(spec, LOGS_IDENTITY, broker, keepalive=KEEPALIVE_S) as session:
        yield session


def follow_log(spec: Spec, device: Device, echo: Callable[[str], None], broker: Address | None = None,
               lines: int | None = None, ready: Callable[[], None] = lambda: None) -> int:
    """Prints each line the device publishes to its log topic until Ctrl-C (or `lines` lines); `ready` runs once the
    broker has the subscription (lines are not retained: what the device said before is gone). Returns how many."""
    if device.log is None:
        raise UserError(f"{device.id} does not publish its log (log.level is none, the default)",
                        hint=f"set log: {{level: info}} in {spec.path}, then build and flash it; or read its serial "
                             f"port: gen logs {spec.path} --device {device.id} --serial")
    shown = 0
    with logs_session(spec, broker) as session:
        try:
            granted = session.subscribe([(device.log.topic, 0)])
        except ConnectionClosed as error:
            raise UserError(f"the broker closed the connection while subscribing to {device.log.topic}: {error}") \
                from None
        if granted and granted[0] == 0x80:
            raise UserError(f"the broker refused {LOGS_IDENTITY} the topic {device.log.topic}",
                            hint=f"run `gen generate {spec.path}` and restart the broker with its new ACL")
        ready()
        session.sock.settimeout(READ_TIMEOUT_S)
        while lines is None or shown < lines:
            try:
                message = session.next_message()
            except ConnectionClosed as error:
                if isinstance(error.__cause__, socket.timeout):
                    session.ping()         # quiet device: keep the session
                    continue
                raise UserError(f"the broker closed the connection of {LOGS_IDENTITY}: {error}") from None
            echo(message.payload.decode("utf-8", "replace").rstrip("\r\n"))
            shown += 1
    return shown
