"""Shared fixtures: free ports, example projects with their PKI (built once per session), the real Mosquitto
started from generated files, and MQTT/TLS clients to talk to it.

    def test_something(broker_project, start_broker):
        project = broker_project("mtls")                # two devices (sensor-a, sensor-b) + backend, PKI, OUT/broker
        broker = start_broker(project.broker_dir)        # real mosquitto on 127.0.0.1:<free port>, stopped after the test
        with mqtt_session(broker, project.client("sensor-a")) as device:
            device.publish("devices/sensor-a/telemetry", b"21.5")

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import shutil
import socket
import subprocess
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from functools import lru_cache
from typing import Callable, Iterator

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mbedtls import pk as mbedtls_pk
from mbedtls import tls as mbedtls_tls
from mbedtls import x509 as mbedtls_x509
from mbedtls.exceptions import TLSError as MbedTLSError

from generator.pki import profiles
from generator.broker.render import render_broker
from generator.pki.credentials import ClientCredentials, SpecCredentials
from generator.core.errors import ToolError
from generator.core.files import write_tree
from generator.pki.spec_credentials import spec_credentials
from generator.broker.runner import RunningBroker, running_broker
from generator.core.mqtt_wire import connect_packet
from generator.core.paths import PROJECT_ROOT
from generator.spec import BACKEND_IDENTITY, Spec, load_spec

EXAMPLES_DIR = PROJECT_ROOT / "projects" / "examples"
LOOPBACK = "127.0.0.1"
BROKER_NAME = "localhost"        # a name on every test broker certificate (with 127.0.0.1)
WAIT_S = 10.0                    # upper bound for a reply that should come at once; never a timed assertion


# ---------------------------------------------------------------------------------------------- tiers
# tests/unit/: the fast tier (no subprocess, no network, no compiler); tests/integration/: real brokers, TLS stacks,
# compilers and tools called from Python; tests/e2e/: gen as a user runs it (the CLI in a process, simulations, the
# installed wheel). `.venv/bin/python -m pytest tests/unit` runs the fast tier alone.

UNIT_DIR = Path(__file__).parent / "unit"


class NotAUnitTest(AssertionError):
    """A test in tests/unit/ started a process or touched the network: it belongs in integration/ or e2e/."""


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process_and_open_no_socket(request, monkeypatch) -> Iterator[None]:
    if UNIT_DIR not in Path(str(request.node.path)).parents:
        yield
        return

    def refuse(what: str) -> Callable[..., None]:
        def refused(*args, **kwargs) -> None:
            raise NotAUnitTest(f"{what} in a unit test: move {request.node.nodeid} to tests/integration or tests/e2e")
        return refused

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("a subprocess"))
    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, refuse(f"socket.{method}"))
    yield


# ---------------------------------------------------------------------------------------------- ports


def find_free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.fixture
def free_port() -> Callable[[], int]:
    """`free_port()` returns a TCP port free on 127.0.0.1."""
    return find_free_port


# ---------------------------------------------------------------------------------------------- projects


@dataclass(frozen=True)
class ClientFiles:
    """A client identity's files on disk, for command-line clients (mosquitto_pub --cafile --cert --key)."""

    ca: Path
    cert: Path | None
    key: Path | None


@dataclass(frozen=True)
class BrokerProject:
    """A spec with its PKI (next to the spec) and OUT/broker/ rendered from it."""

    spec: Spec
    credentials: SpecCredentials
    out_dir: Path

    @property
    def broker_dir(self) -> Path:
        return self.out_dir / "broker"

    def client(self, name: str) -> ClientCredentials:
        """A device's credentials by id, or the backend's ("backend")."""
        return self.credentials.backend if name == BACKEND_IDENTITY else self.credentials.devices[name]

    def client_files(self, name: str) -> ClientFiles:
        client = self.client(name)
        directory = self.out_dir / "clients" / name
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = {"ca.pem": client.ca_pem}
        if client.cert_pem is not None and client.key_pem is not None:
            files |= {"client.pem": client.cert_pem, "client.key": client.key_pem}
        write_tree(directory, files, modes={"client.key": 0o600})
        return ClientFiles(directory / "ca.pem",
                           directory / "client.pem" if "client.pem" in files else None,
                           directory / "client.key" if "client.key" in files else None)

    def regenerate(self) -> "BrokerProject":
        """Re-reads the PKI (e.g. after a revocation) and re-renders OUT/broker/."""
        return build_broker_project(self.spec.path, self.out_dir)


def build_broker_project(spec_path: Path, out_dir: Path | None = None) -> BrokerProject:
    spec = load_spec(spec_path)
    credentials = spec_credentials(spec)
    out = out_dir or spec.directory / "build"
    rendered = render_broker(spec, credentials.broker)
    write_tree(out / "broker", rendered.files, modes=rendered.modes)
    return BrokerProject(spec, credentials, out)


def two_device_spec(auth: str) -> str:
    """A spec with two devices that must not see each other's topics."""
    return f"""\
project: broker-test
target: esp32-arduino
wifi:
  ssid: test-wifi
  password: test-passphrase
broker:
  host: {BROKER_NAME}
  names: [{BROKER_NAME}, {LOOPBACK}]
  port: 8883
auth: {auth}
status:
  topic: devices/{{id}}/status
publish:
  - name: telemetry
    topic: devices/{{id}}/telemetry
    interval: 10
subscribe:
  - name: command
    filter: devices/{{id}}/cmd/#
    qos: 1
devices:
  - id: sensor-a
  - id: sensor-b
"""


@pytest.fixture(scope="session")
def broker_project(tmp_path_factory) -> Callable[[str], BrokerProject]:
    """`broker_project(auth)`: the two-device project for an auth mode ("mtls", "password", "mtls+password"),
    PKI and OUT/broker/ built once per session. Treat it as read-only; copy_project() for one you may change."""
    built: dict[str, BrokerProject] = {}

    def get(auth: str) -> BrokerProject:
        if auth not in built:
            directory = tmp_path_factory.mktemp(f"broker-{auth.replace('+', '-')}")
            (directory / "device.yaml").write_text(two_device_spec(auth))
            built[auth] = build_broker_project(directory / "device.yaml")
        return built[auth]

    return get


@pytest.fixture(scope="session")
def example_project(tmp_path_factory) -> Callable[[str], BrokerProject]:
    """`example_project(name)`: projects/examples/<name> copied to a temp dir, its PKI created and OUT/broker/
    rendered, once per session."""
    built: dict[str, BrokerProject] = {}

    def get(name: str) -> BrokerProject:
        if name not in built:
            directory = tmp_path_factory.mktemp(f"example-{name}") / name
            shutil.copytree(EXAMPLES_DIR / name, directory, ignore=shutil.ignore_patterns("pki", "build"))
            built[name] = build_broker_project(directory / "device.yaml")
        return built[name]

    return get


@pytest.fixture
def copy_project(tmp_path) -> Callable[[BrokerProject], BrokerProject]:
    """`copy_project(project)`: a private copy (spec, PKI and OUT) a test may revoke in or otherwise change."""

    def copy(project: BrokerProject) -> BrokerProject:
        directory = tmp_path / f"copy-{project.spec.directory.name}"
        shutil.copytree(project.spec.directory, directory)
        out = directory / project.out_dir.relative_to(project.spec.directory)
        return build_broker_project(directory / project.spec.path.name, out)

    return copy


# ---------------------------------------------------------------------------------------------- certificates


@lru_cache(maxsize=1)
def foreign_ca() -> profiles.CertificateAuthority:
    """A CA that is not the project's: same kind of profile, different key."""
    now = dt.datetime.now(dt.timezone.utc)
    key = profiles.generate_key("ec-p256")
    return profiles.CertificateAuthority(profiles.build_root_ca(key, project="intruder", validity_days=30, now=now), key)


def issuing_ca(project) -> profiles.CertificateAuthority:
    """The project's issuing CA, read from its PKI directory."""
    directory = project.spec.pki.dir
    cert = x509.load_pem_x509_certificate((directory / "issuing-ca.pem").read_bytes())
    key = profiles.load_private_key_pem((directory / "private" / "issuing-ca-key.pem").read_bytes(), "issuing CA key")
    return profiles.CertificateAuthority(cert, key)


def client_with_cert(base: ClientCredentials, issuer: profiles.CertificateAuthority, *, name: str | None = None,
                     now: dt.datetime | None = None, validity_days: int = 30) -> ClientCredentials:
    """`base` with a fresh key and a cert issued by `issuer` (CN = name, default base.name)."""
    key = profiles.generate_key("ec-p256")
    cert = profiles.issue_device_cert(key.public_key(), name or base.name, issuer=issuer, validity_days=validity_days,
                                 now=now or dt.datetime.now(dt.timezone.utc), project="test")
    return ClientCredentials(name=name or base.name, ca_pem=base.ca_pem,
                             cert_pem=cert.public_bytes(serialization.Encoding.PEM),
                             key_pem=profiles.private_key_pem(key), password=base.password)


# ---------------------------------------------------------------------------------------------- the broker


@pytest.fixture
def start_broker() -> Iterator[Callable[..., RunningBroker]]:
    """`start_broker(broker_dir, **options)`: the real mosquitto on 127.0.0.1 and free ports, from the files
    in broker_dir (OUT/broker/); stopped at the end of the test."""
    with contextlib.ExitStack() as stack:

        def start(broker_dir: Path, **options) -> RunningBroker:
            options.setdefault("bind_address", LOOPBACK)
            for attempt in range(3):
                # Every listener on a free port (the TLS one, the bootstrap and the plaintext one when the config
                # has them): a configured port would collide with another test's broker.
                chosen = {name: find_free_port() for name in ("port", "provision_port", "plaintext_port")
                          if name not in options}
                try:
                    return stack.enter_context(running_broker(Path(broker_dir), **options, **chosen))
                except ToolError as error:
                    # Another process took the free port between our probe and the broker's bind: try another.
                    if chosen and "Address already in use" in error.message and attempt < 2:
                        continue
                    raise
            raise AssertionError("unreachable")

        yield start


# ---------------------------------------------------------------------------------------------- TLS clients


def client_tls_context(client: ClientCredentials, *, ca_pem: bytes | None = None, with_cert: bool = True,
                       max_version: ssl.TLSVersion | None = ssl.TLSVersion.TLSv1_2,
                       min_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """An OpenSSL client context: trusts `ca_pem` (default: the client's CA), presents the client's cert if it
    has one. TLS 1.2 at most by default: with 1.3 a refused client cert only shows on the first read."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=(ca_pem or client.ca_pem).decode())
    if max_version is not None:
        context.maximum_version = max_version
    if min_version is not None:
        context.minimum_version = min_version
    if with_cert and client.cert_pem is not None:
        load_cert_chain_from_memory(context, client.cert_pem, client.key_pem)
    return context


def load_cert_chain_from_memory(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)


def tls_connect(broker: RunningBroker, context: ssl.SSLContext, *, server_hostname: str = BROKER_NAME,
                port: int | None = None) -> ssl.SSLSocket:
    """A completed TLS handshake with the broker (raises ssl.SSLError when either side refuses)."""
    raw = socket.create_connection((broker.host, port or broker.port), timeout=WAIT_S)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def mbedtls_client_context(client: ClientCredentials) -> mbedtls_tls.ClientContext:
    """An mbedTLS 2.28 client (the ESP32's stack), TLS 1.2 only like Arduino-ESP32 2.0.x: trusts the client's CA,
    presents its cert if it has one."""
    trust = mbedtls_tls.TrustStore()
    for block in client.ca_pem.decode().split("-----END CERTIFICATE-----")[:-1]:
        trust.add(mbedtls_x509.CRT.from_PEM(block + "-----END CERTIFICATE-----\n"))
    options = dict(trust_store=trust, validate_certificates=True,
                   lowest_supported_version=mbedtls_tls.TLSVersion.TLSv1_2,
                   highest_supported_version=mbedtls_tls.TLSVersion.TLSv1_2)
    if client.cert_pem is not None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        is_rsa = isinstance(load_pem_private_key(client.key_pem, None), rsa.RSAPrivateKey)
        key = (mbedtls_pk.RSA if is_rsa else mbedtls_pk.ECC).from_PEM(client.key_pem.decode())
        options["certificate_chain"] = ((mbedtls_x509.CRT.from_PEM(client.cert_pem.decode()),), key)
    return mbedtls_tls.ClientContext(mbedtls_tls.TLSConfiguration(**options))


def mbedtls_connect(broker: RunningBroker, client: ClientCredentials, server_hostname: str = BROKER_NAME):
    """A completed mbedTLS handshake with the broker (raises when either side refuses)."""
    sock = mbedtls_client_context(client).wrap_socket(
        socket.create_connection((broker.host, broker.port), timeout=WAIT_S), server_hostname=server_hostname)
    sock.do_handshake()
    return sock


# ---------------------------------------------------------------------------------------------- raw MQTT


def mqtt_connect_packet(client_id: str, *, username: str | None = None, password: str | None = None,
                        keepalive: int = 30, will: tuple[str, bytes] | None = None, will_retain: bool = False) -> bytes:
    """An MQTT 3.1.1 CONNECT packet (clean session), with an optional will (topic, payload) at QoS 1."""
    return connect_packet(client_id, username=username, password=password, keepalive=keepalive, will=will,
                          will_qos=1, will_retain=will_retain)


def mqtt_connack_code(sock) -> int | None:
    """Reads a CONNACK and returns its return code (0 = accepted), or None when the broker closed the
    connection without one. `sock` needs only send/recv (OpenSSL and mbedTLS sockets both do)."""
    data = b""
    deadline = time.monotonic() + WAIT_S
    while len(data) < 4:
        try:
            chunk = sock.recv(4 - len(data))
        except mbedtls_tls.WantReadError:  # mbedTLS sockets say "nothing yet" instead of blocking
            assert time.monotonic() < deadline, "no reply from the broker"
            time.sleep(0.005)
            continue
        except (ConnectionError, ssl.SSLError, MbedTLSError, OSError):
            return None
        if not chunk:
            return None
        data += chunk
    assert data[0] == 0x20 and data[1] == 2, f"not a CONNACK: {data!r}"
    return data[3]


def mqtt_connect_over(sock, client: ClientCredentials, *, password: str | None = None,
                      will: tuple[str, bytes] | None = None) -> int | None:
    """Sends CONNECT as `client` (with its password, if it has one) and returns the CONNACK code."""
    password = password if password is not None else client.password
    sock.send(mqtt_connect_packet(client.name, username=client.name if password else None, password=password,
                                  will=will))
    return mqtt_connack_code(sock)


# ---------------------------------------------------------------------------------------------- paho sessions


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class MqttSession:
    """A connected paho-mqtt client (OpenSSL) with blocking helpers: publish waits for the PUBACK, subscribe for
    the SUBACK; received messages queue up in order."""

    def __init__(self, client: paho.Client):
        self.client = client
        self.messages: "queue.Queue[Received]" = queue.Queue()
        self._acks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        client.on_message = lambda _c, _u, m: self.messages.put(Received(m.topic, m.payload, bool(m.retain)))
        client.on_publish = lambda _c, _u, mid, _rc, _p: self._ack(mid)
        client.on_subscribe = lambda _c, _u, mid, _rcs, _p: self._ack(mid)

    def _event(self, mid: int) -> threading.Event:
        with self._lock:
            return self._acks.setdefault(mid, threading.Event())

    def _ack(self, mid: int) -> None:
        self._event(mid).set()

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        result, mid = self.client.subscribe(topic_filter, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        assert self._event(mid).wait(WAIT_S), f"no SUBACK for {topic_filter}"

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS
        if qos:
            assert self._event(info.mid).wait(WAIT_S), f"no PUBACK for {topic}"

    def next_message(self) -> Received:
        return self.messages.get(timeout=WAIT_S)

    def receive_until(self, topic: str) -> list[Received]:
        """Every message up to and including the first on `topic` (a sentinel the test sent last)."""
        seen = []
        while True:
            message = self.next_message()
            seen.append(message)
            if message.topic == topic:
                return seen


def paho_client(client: ClientCredentials, context: ssl.SSLContext, *, password: str | None = None,
                client_id: str | None = None) -> tuple[paho.Client, "queue.Queue[str]"]:
    mqtt = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or client.name,
                       protocol=paho.MQTTv311)
    mqtt.tls_set_context(context)
    password = password if password is not None else client.password
    if password is not None:
        mqtt.username_pw_set(client.name, password)
    connacks: "queue.Queue[str]" = queue.Queue()
    mqtt.on_connect = lambda _c, _u, _f, reason, _p: connacks.put(str(reason))
    mqtt.on_connect_fail = lambda _c, _u: connacks.put("connect failed")
    mqtt.on_disconnect = lambda _c, _u, _f, reason, _p: connacks.put(f"disconnected: {reason}")
    return mqtt, connacks


def paho_connack(broker: RunningBroker, client: ClientCredentials, *, context: ssl.SSLContext | None = None,
                 password: str | None = None) -> str:
    """What a paho-mqtt client gets: its CONNACK reason ("Success", "Not authorized", ...), or
    "disconnected: ..." when the broker drops the connection without one."""
    mqtt, connacks = paho_client(client, context or client_tls_context(client), password=password)
    mqtt.connect(broker.host, broker.port, keepalive=30)
    mqtt.loop_start()
    try:
        return connacks.get(timeout=WAIT_S)
    finally:
        mqtt.disconnect()
        mqtt.loop_stop()


@contextlib.contextmanager
def mqtt_session(broker: RunningBroker, client: ClientCredentials, *, context: ssl.SSLContext | None = None,
                 client_id: str | None = None) -> Iterator[MqttSession]:
    """A paho-mqtt session as `client`, connected (CONNACK 0 asserted) until the block ends."""
    mqtt, connacks = paho_client(client, context or client_tls_context(client), client_id=client_id)
    session = MqttSession(mqtt)
    mqtt.connect(broker.host, broker.port, keepalive=30)
    mqtt.loop_start()
    try:
        code = connacks.get(timeout=WAIT_S)
        assert code == "Success", f"{client.name} was refused (CONNACK {code}); broker log:\n{broker.log_text()[-2000:]}"
        yield session
    finally:
        mqtt.disconnect()
        mqtt.loop_stop()
