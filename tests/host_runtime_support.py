"""Local fixtures for the host-runtime tests: a throwaway PKI, a real Mosquitto with three TLS
listeners, NVS images made by esp-idf-nvs-partition-gen, and a running simulated device.

Kept beside the tests until a shared test-infrastructure module provides brokers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import pwd
import queue
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from esp_idf_nvs_partition_gen import nvs_partition_gen as nvs_gen


# ---- PKI -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[Issued, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(_pem(cert), _key_pem(key)), key, cert


def issue(ca_key, ca_cert, cn: str, *, server: bool, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass(frozen=True)
class Pki:
    ca: Issued
    foreign_ca: Issued
    server: Issued          # SAN: localhost, mqtt.example.com, 127.0.0.1 as iPAddress and as dNSName
    server_ip_only: Issued  # SAN: iPAddress 127.0.0.1 only
    device: Issued          # CN device-001
    backend: Issued         # CN backend


def make_pki() -> Pki:
    ca, ca_key, ca_cert = make_ca("Test Root CA")
    foreign, _, _ = make_ca("Foreign Root CA")
    return Pki(
        ca=ca, foreign_ca=foreign,
        server=issue(ca_key, ca_cert, "localhost", server=True,
                     dns=("localhost", "mqtt.example.com", "127.0.0.1"), ips=("127.0.0.1",)),
        server_ip_only=issue(ca_key, ca_cert, "127.0.0.1", server=True, ips=("127.0.0.1",)),
        device=issue(ca_key, ca_cert, "device-001", server=False, dns=("device-001",)),
        backend=issue(ca_key, ca_cert, "backend", server=False, dns=("backend",)),
    )


# ---- Mosquitto ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def password_line(user: str, password: str, iterations: int = 101) -> str:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass
class Broker:
    process: subprocess.Popen
    mtls_port: int        # client certs required, CN = username
    password_port: int    # server-auth TLS, password_file users
    ip_only_port: int     # mTLS with the iPAddress-only server cert
    directory: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _readable_by_broker(path: Path) -> None:
    """Started as root, mosquitto drops to user `mosquitto` before it reads any file."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(path, entry.pw_uid, entry.pw_gid)


def start_broker(directory: Path, pki: Pki) -> Broker:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "ca.pem": pki.ca.cert_pem, "server.pem": pki.server.cert_pem, "server.key": pki.server.key_pem,
        "ip.pem": pki.server_ip_only.cert_pem, "ip.key": pki.server_ip_only.key_pem,
        "passwd": password_line("alice", "correct horse") + "\n",
        "acl": "user backend\ntopic readwrite #\n\nuser alice\ntopic readwrite #\n\npattern readwrite devices/%u/#\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text)
        os.chmod(directory / name, 0o600)
        _readable_by_broker(directory / name)
    ports = [free_port() for _ in range(3)]
    conf = [
        "per_listener_settings false", "allow_anonymous false",
        f"password_file {directory / 'passwd'}", f"acl_file {directory / 'acl'}",
        "persistence false", "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
        "log_type information",
        f"listener {ports[0]} 127.0.0.1", f"cafile {directory / 'ca.pem'}",
        f"certfile {directory / 'server.pem'}", f"keyfile {directory / 'server.key'}",
        "require_certificate true", "use_identity_as_username true",
        f"listener {ports[1]} 127.0.0.1", f"cafile {directory / 'ca.pem'}",
        f"certfile {directory / 'server.pem'}", f"keyfile {directory / 'server.key'}",
        f"listener {ports[2]} 127.0.0.1", f"cafile {directory / 'ca.pem'}",
        f"certfile {directory / 'ip.pem'}", f"keyfile {directory / 'ip.key'}",
        "require_certificate true", "use_identity_as_username true",
    ]
    (directory / "mosquitto.conf").write_text("\n".join(conf) + "\n")
    process = subprocess.Popen(["mosquitto", "-c", str(directory / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "running" in line and "mosquitto version" in line:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return Broker(process, *ports, directory)
    process.kill()
    raise RuntimeError("mosquitto did not start:\n" + "".join(seen))


# ---- NVS images ----------------------------------------------------------------------------------------

def nvs_image(path: Path, namespace: str, entries: dict[str, object], size: int = 0x6000) -> Path:
    """An NVS partition image written by esp-idf-nvs-partition-gen (strings, u16 ints, bytes blobs)."""
    out = BytesIO()
    nvs = nvs_gen.nvs_open(out, size, nvs_gen.Page.VERSION2)
    nvs_gen.write_entry(nvs, namespace, "namespace", "", "")
    for key, value in entries.items():
        if isinstance(value, bytes):
            nvs_gen.write_entry(nvs, key, "data", "binary", value)
        elif isinstance(value, int):
            nvs_gen.write_entry(nvs, key, "data", "u16", str(value))
        else:
            nvs_gen.write_entry(nvs, key, "data", "string", value)
    nvs_gen.nvs_close(nvs)
    path.write_bytes(out.getvalue())
    return path


# ---- A running simulated device -------------------------------------------------------------------------

class Device:
    """A host-built firmware process whose stdout is collected line by line."""

    def __init__(self, executable: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen([str(executable)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, env={**os.environ, **env})
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\r\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 15, after: int = 0) -> str:
        """Returns the first line from index `after` on (seen so far or arriving) that contains text."""
        for line in self.lines[after:]:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r}; output so far:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> str:
        """SIGTERM, then the runtime's "[sim] stopped" line (the process exits 0)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        stopped = self.wait_for("[sim] stopped", timeout=10)
        assert self.process.wait(timeout=5) == 0
        return stopped

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def tls_context(pki: Pki, directory: Path, who: Issued) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.ca.cert_pem)
    cert, key = directory / "client.pem", directory / "client.key"
    cert.write_text(who.cert_pem)
    key.write_text(who.key_pem)
    os.chmod(key, 0o600)
    ctx.load_cert_chain(cert, key)
    return ctx
