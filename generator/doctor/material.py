"""What `gen doctor` works from: where it dials (DoctorTarget, like curl's --connect-to) and what the spec's PKI holds
for one device's path (DoctorMaterial), read without changing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from generator.core.errors import UserError
from generator.doctor import probes
from generator.pki.broker_trust import broker_trust
from generator.pki.credentials import ClientCredentials
from generator.pki.store import PkiStore
from generator.pki.x509_facts import key_matches
from generator.spec.contract import DOCTOR_IDENTITY
from generator.spec.model import Device, Spec

PROBE_CLIENT_SUFFIX = "-doctor"     # the client id probes ask for; the broker replaces it with the user name


@dataclass(frozen=True)
class DoctorTarget:
    """Where the probe dials, and the name it verifies (the one the device dials), like curl's --connect-to."""

    device: Device
    server_name: str                 # the broker host in the spec: what the device dials and verifies
    dial_host: str
    dial_port: int
    overridden: bool = False         # --broker given

    @property
    def address(self) -> probes.Address:
        return (self.dial_host, self.dial_port)

    @property
    def probe_client_id(self) -> str:
        return self.device.client_id + PROBE_CLIENT_SUFFIX

    @classmethod
    def for_device(cls, spec: Spec, device: Device, broker_override: str | None = None) -> "DoctorTarget":
        # A RabbitMQ cluster: the device dials its first node first (and verifies that name), so does the doctor;
        # --broker names another node.
        name = device.broker.dial_hosts[0]
        host, port = name, device.broker.port
        if broker_override:
            host, port = parse_host_port(broker_override, default_port=port)
        return cls(device, name, host, port, overridden=bool(broker_override))


def parse_host_port(text: str, *, default_port: int) -> tuple[str, int]:
    """`host:port`, `host`, `[v6]:port` or a bare IPv6 address."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise UserError(f"--broker {text!r} names no host", hint="write --broker HOST:PORT, e.g. 127.0.0.1:8883")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UserError(f"--broker {text!r} has no valid port", hint="write --broker HOST:PORT, e.g. 127.0.0.1:8883")
    return host, int(port_text)


@dataclass(frozen=True)
class CertAndKey:
    name: str                        # how messages name it, e.g. "device greenhouse-01"
    path: Path
    cert: x509.Certificate | None    # None: the file is missing or unreadable
    cert_pem: bytes | None
    key_pem: bytes | None = field(default=None, repr=False)
    key_matches: bool | None = None  # None: no key file
    index_status: str | None = None  # "valid" | "revoked" | "superseded" | None (not in the index)


@dataclass(frozen=True)
class DoctorMaterial:
    """What the PKI holds for one device's path, read without changing anything."""

    device_id: str
    root_ca: x509.Certificate        # what the device trusts
    issuing_ca: x509.Certificate     # signs the broker, device and doctor certs, and the CRL
    broker: CertAndKey | None        # None when the broker's cert is not in this project (broker.ca_file)
    device: CertAndKey | None        # None when the device uses no client cert
    doctor: CertAndKey               # the doctor's own server-side identity
    crl: x509.CertificateRevocationList | None
    device_password: str | None = field(default=None, repr=False)
    doctor_password: str | None = field(default=None, repr=False)
    device_password_path: Path | None = None
    chain: tuple[x509.Certificate, ...] = ()        # an imported issuing CA's intermediates up to the root
    broker_trust: tuple[x509.Certificate, ...] = ()  # what devices trust for the broker, when not our root
    broker_trust_file: Path | None = None            # ... and the spec's broker.ca_file it came from
    device_key_on_device: bool = False               # key_origin: device: gen never holds the device's key

    def probe_credentials(self) -> ClientCredentials:
        """Who the TLS step shows the broker: the device, or (its key being on the device) the doctor identity,
        which the same issuing CA signed."""
        return self.doctor_credentials() if self.device_key_on_device else self.device_credentials()

    @property
    def device_trust(self) -> tuple[x509.Certificate, ...]:
        return self.broker_trust or (self.root_ca,)

    def device_credentials(self) -> ClientCredentials:
        return ClientCredentials(name=self.device_id, ca_pem=b"".join(_pem(c) for c in self.device_trust),
                                 cert_pem=self.device.cert_pem if self.device else None,
                                 key_pem=self.device.key_pem if self.device else None, password=self.device_password)

    def doctor_credentials(self) -> ClientCredentials:
        return ClientCredentials(name=DOCTOR_IDENTITY, ca_pem=b"".join(_pem(c) for c in self.device_trust),
                                 cert_pem=self.doctor.cert_pem,
                                 key_pem=self.doctor.key_pem, password=self.doctor_password)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def probe_identity(credentials: ClientCredentials) -> probes.ClientIdentity:
    return probes.ClientIdentity(credentials.ca_pem, credentials.cert_pem, credentials.key_pem)


def load_material(spec: Spec, device: Device) -> DoctorMaterial:
    """Reads the spec's PKI without writing to it (PkiStore.open with create=False, no passphrase: no CA key is
    touched), and the broker trust the spec brings (checked by generator.pki.broker_trust). Raises UserError when
    there is no usable PKI at all, or the brought trust is unusable."""
    trust = broker_trust(spec)

    store = PkiStore.open(Path(spec.pki.dir), project=spec.project, key_type=spec.pki.key_type, create=False)
    layout = store.layout
    entries = {(entry.role, entry.id): entry for entry in store.entries() if entry.status != "superseded"}

    def cert_and_key(role: str, name: str, label: str) -> CertAndKey:
        cert_path, key_path = layout.cert_path(role, name), layout.key_path(role, name)
        cert_pem, key_pem = _read(cert_path), _read(key_path)
        cert = None
        if cert_pem:
            try:
                cert = x509.load_pem_x509_certificates(cert_pem)[0]
            except ValueError:
                cert = None
        key_matches = None
        if cert is not None and key_pem:
            key_matches = _key_matches(key_pem, cert)
        entry = entries.get((role, name))
        return CertAndKey(label, cert_path, cert, cert_pem, key_pem, key_matches,
                          entry.status if entry else None)

    crl = None
    crl_pem = _read(layout.crl)
    if crl_pem:
        try:
            crl = x509.load_pem_x509_crl(crl_pem)
        except ValueError:
            crl = None
    device_password_path = layout.password_path(device.username) if device.uses_password else None
    return DoctorMaterial(
        device_id=device.id,
        root_ca=store.root_ca_cert,
        issuing_ca=store.issuing_ca_cert,
        broker=cert_and_key("broker", "broker", "the broker") if spec.broker.issues_cert else None,
        device=cert_and_key("device", device.id, f"device {device.id}") if device.uses_client_cert else None,
        doctor=cert_and_key("client", DOCTOR_IDENTITY, f"client {DOCTOR_IDENTITY}"),
        crl=crl,
        device_password=store.existing_password(device.username) if device.uses_password else None,
        device_key_on_device=device.makes_own_key,
        doctor_password=store.existing_password(DOCTOR_IDENTITY),
        device_password_path=device_password_path,
        chain=store.chain,
        broker_trust=trust.ca_certs if trust else (),
        broker_trust_file=trust.ca_file if trust else None,
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _key_matches(key_pem: bytes, cert: x509.Certificate) -> bool:
    """Whether a PEM key file (as the device holds it) is the cert's key; False for anything unreadable."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (TypeError, ValueError):
        return False
    return isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) and key_matches(key, cert)
