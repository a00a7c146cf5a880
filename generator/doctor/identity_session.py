"""An MQTT session as one of gen's own identities on the broker (gen.ota publishing announcements, gen.logs
following device logs): its certificate and key from the PKI, its password when the auth mode asks for one, the CA
the devices trust for the broker, and each refusal said in words with what to do."""

from __future__ import annotations

import contextlib
import ssl
from typing import Iterator

from generator.core.errors import UserError
from generator.core.mqtt_wire import ConnectionClosed, MqttSession
from generator.doctor.probes import Address, ClientIdentity, open_tls
from generator.pki.broker_trust import broker_trust
from generator.pki.layout import PkiLayout
from generator.pki.spec_identities import open_spec_pki
from generator.spec.model import Spec

CONNECT_TIMEOUT_S = 10.0


def gen_identity(spec: Spec, name: str) -> tuple[ClientIdentity, str | None]:
    """What gen's identity `name` presents to the broker: the CA the devices trust for it, its certificate and key
    (pki/clients/, pki/private/clients/), and its password when a device's auth mode asks for one."""
    layout = PkiLayout(spec.pki.dir)
    trust = broker_trust(spec)
    cert, key = layout.cert_path("client", name), layout.key_path("client", name)
    try:
        ca = trust.ca_pem if trust is not None else layout.ca_cert.read_bytes()
        identity = ClientIdentity(ca_pem=ca, cert_pem=cert.read_bytes(), key_pem=key.read_bytes())
    except OSError as error:
        raise UserError(f"the PKI has no certificate for {name} ({error.filename})",
                        hint=f"run `gen generate {spec.path}`, which issues it") from None
    password = None
    if any(device.uses_password for device in spec.devices):
        password = open_spec_pki(spec, create=False).existing_password(name)
    return identity, password


@contextlib.contextmanager
def gen_identity_session(spec: Spec, name: str, broker: Address | None = None, *,
                         called: str | None = None, keepalive: int = 30,
                         server_name: str | None = None) -> Iterator[MqttSession]:
    """A session as gen's identity `name` (client id and user) with the spec's broker.host:port, or `broker`, verified
    as `server_name` (default broker.host). `called`: how messages name it (default: its name)."""
    address = broker or (spec.broker.host, spec.broker.port)
    called = called or name
    identity, password = gen_identity(spec, name)
    try:
        sock = open_tls(address, server_name or spec.broker.host, identity, timeout=CONNECT_TIMEOUT_S)
    except ssl.SSLError as error:
        raise UserError(f"the broker at {address[0]}:{address[1]} refused {called}: {error}",
                        hint=f"is its config the one `gen generate` wrote (with user {name})? then restart it "
                             f"(gen broker up {spec.path})") from None
    except OSError as error:
        raise UserError(f"cannot reach the broker at {address[0]}:{address[1]}: {error.strerror or error}",
                        hint=f"start it (gen broker up {spec.path}), or say where it is with --broker HOST:PORT"
                        ) from None
    with contextlib.closing(sock):
        session = MqttSession(sock)
        try:
            code = session.connect(name, username=name if password else None, password=password, keepalive=keepalive)
        except ConnectionClosed as error:
            raise UserError(f"the broker closed the connection of {name}: {error}") from None
        if code != 0:
            raise UserError(f"the broker refused {name} (CONNACK {code})",
                            hint=f"run `gen generate {spec.path}` and restart the broker with its new password file "
                                 "and ACL")
        try:
            yield session
        finally:
            session.disconnect()
