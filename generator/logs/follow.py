"""Following a device's log over MQTT: a session as LOGS_IDENTITY (its own client id: an operator's mosquitto_sub or
the backend is never kicked off), subscribed to the device's log topic, each message one line of its serial log."""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Callable, Iterator

from generator.pki.broker_trust import broker_trust
from generator.core.errors import UserError
from generator.core.mqtt_wire import ConnectionClosed, MqttSession
from generator.doctor.probes import ClientIdentity, open_tls
from generator.pki.layout import PkiLayout
from generator.pki.spec_identities import open_spec_pki
from generator.spec.contract import LOGS_IDENTITY
from generator.spec.model import Device, Spec

Address = tuple[str, int]
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
READ_TIMEOUT_S = 10.0          # a PINGREQ after this long without traffic keeps the session (and Ctrl-C) alive


def logs_identity(spec: Spec) -> tuple[ClientIdentity, str | None]:
    """What gen.logs presents to the broker: the CA the devices trust for it, its certificate and key, and its
    password when the auth mode asks for one."""
    layout = PkiLayout(spec.pki.dir)
    trust = broker_trust(spec)
    cert, key = layout.cert_path("client", LOGS_IDENTITY), layout.key_path("client", LOGS_IDENTITY)
    try:
        ca = trust.ca_pem if trust is not None else layout.ca_cert.read_bytes()
        identity = ClientIdentity(ca_pem=ca, cert_pem=cert.read_bytes(), key_pem=key.read_bytes())
    except OSError as error:
        raise UserError(f"the PKI has no certificate for {LOGS_IDENTITY} ({error.filename})",
                        hint=f"run `gen generate {spec.path}`, which issues it") from None
    password = None
    if any(device.uses_password for device in spec.devices):
        password = open_spec_pki(spec, create=False).existing_password(LOGS_IDENTITY)
    return identity, password


@contextlib.contextmanager
def logs_session(spec: Spec, broker: Address | None = None) -> Iterator[MqttSession]:
    """An MQTT session as LOGS_IDENTITY (spec's broker.host:port, or `broker`, verified as broker.host)."""
    address = broker or (spec.broker.host, spec.broker.port)
    identity, password = logs_identity(spec)
    try:
        sock = open_tls(address, spec.broker.host, identity, timeout=CONNECT_TIMEOUT_S)
    except ssl.SSLError as error:
        raise UserError(f"the broker at {address[0]}:{address[1]} refused {LOGS_IDENTITY}: {error}",
                        hint=f"is its config the one `gen generate` wrote (with user {LOGS_IDENTITY})? then restart "
                             f"it (gen broker up {spec.path})") from None
    except OSError as error:
        raise UserError(f"cannot reach the broker at {address[0]}:{address[1]}: {error.strerror or error}",
                        hint=f"start it (gen broker up {spec.path}), or say where it is with --broker HOST:PORT"
                        ) from None
    with contextlib.closing(sock):
        session = MqttSession(sock)
        try:
            code = session.connect(LOGS_IDENTITY, username=LOGS_IDENTITY if password else None, password=password,
                                   keepalive=KEEPALIVE_S)
        except ConnectionClosed as error:
            raise UserError(f"the broker closed the connection of {LOGS_IDENTITY}: {error}") from None
        if code != 0:
            raise UserError(f"the broker refused {LOGS_IDENTITY} (CONNACK {code})",
                            hint=f"run `gen generate {spec.path}` and restart the broker with its new password file "
                                 "and ACL")
        try:
            yield session
        finally:
            session.disconnect()


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
