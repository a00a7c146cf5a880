"""`gen doctor`: walk one device's path to the broker, step by step, with the device's own credentials, and name the
first broken link with the one thing to do about it.

    steps = run_doctor(spec, device, DoctorTarget.for_device(spec, device, broker_override="127.0.0.1:18883"))

Steps, in the order a device meets them (STEPS): the spec and PKI agree; the broker name resolves; TCP connects;
the TLS handshake succeeds as mbedTLS 2.28 (the ESP32) and as OpenSSL do it; the broker accepts the client cert;
MQTT CONNECT is accepted; the ACL lets the device publish and receive, proven by a round trip with the doctor's
own server-side identity (DOCTOR_IDENTITY, never your backend's). The run stops at the first failure; later steps
are reported as skipped.

The broker binds each client id to the authenticated user name (use_username_as_clientid), so connecting as the
device would disconnect the device itself. Before it does, the doctor reads the device's retained status topic:
if the device says it is online, its own connection is the proof, and it is left alone (`take_over=True`, the
CLI's --take-over, probes anyway: the device is disconnected once and reconnects).

Layout: `load_material` reads the PKI (read-only: no issuing, no CRL re-signing, no password creation); the
`judge_*`/`check_*` functions are pure (material + probe outcomes + clock -> StepResult); the `run_*_step`
functions do the network I/O through `generator.doctor.probes` and `generator.core.mqtt_wire`.

Nothing here writes a file outside a private temporary directory, publishes a retained message, or prints a
secret: messages name certificates by subject, serial and dates, and passwords only by the file that holds them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets as random_tokens
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from generator.broker.trust import broker_trust
from generator.core.errors import UserError
from generator.core.mqtt_wire import ConnectionClosed, Message, MqttSession
from generator.core.topics import filter_matches
from generator.doctor import probes
from generator.doctor.engine_rules import device_may_subscribe, doctor_login
from generator.pki.credentials import ClientCredentials
from generator.pki.store import PkiStore
from generator.pki.x509_facts import chains_to, issued_by, key_matches
from generator.spec.model import DOCTOR_IDENTITY, Device, Spec

STEPS: tuple[tuple[str, str], ...] = (
    ("pki", "spec and PKI are consistent"),
    ("resolve", "broker name resolves"),
    ("tcp", "TCP connects"),
    ("tls", "TLS handshake (mbedTLS 2.28 as on the ESP32, and OpenSSL)"),
    ("client-cert", "broker accepts the client certificate"),
    ("mqtt-connect", "MQTT CONNECT is accepted"),
    ("acl", "ACL lets the device publish and receive"),
)
STEP_TITLES = dict(STEPS)
PROBE_CLIENT_SUFFIX = "-doctor"     # the client id probes ask for; the broker replaces it with the user name
PROBE_PAYLOAD = b"gen doctor probe "

CONNACK_MEANINGS = {
    0: "connection accepted",
    1: "the broker refuses MQTT 3.1.1 (unacceptable protocol version)",
    2: "the broker rejects the client id (identifier rejected)",
    3: "the broker is up but the MQTT service is unavailable (server unavailable)",
    4: "bad user name or password",
    5: "not authorized",
}

# The alert a broker sends (TLS 1.2) when it refuses a client cert, in words.
CLIENT_CERT_ALERTS = {
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "revoked: the broker's CRL lists it",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "expired",
    "TLSV1_ALERT_UNKNOWN_CA": "from an unknown CA: the broker's cafile does not hold the CA that issued it",
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad (the broker could not verify it)",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "unsupported (e.g. without the clientAuth extended key usage)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "unacceptable to the broker (certificate unknown)",
    "TLSV1_ALERT_DECRYPT_ERROR": "not matched by the key that signed the handshake",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "missing or unusable (handshake failure)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "missing: the broker requires one",
}


# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class StepResult:
    step: str                        # one of STEPS' keys
    ok: bool | None                  # None: skipped, because an earlier step failed
    summary: str                     # one line: what was found
    fix: str | None = None           # one line: what to do (failures only)
    details: tuple[str, ...] = ()    # supporting facts: issuers, SANs, addresses, raw errors

    @property
    def title(self) -> str:
        return STEP_TITLES[self.step]

    @property
    def status(self) -> str:
        return "skipped" if self.ok is None else "ok" if self.ok else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "title": self.title, "status": self.status, "ok": self.ok,
                "summary": self.summary, "fix": self.fix, "details": list(self.details)}


def passed(step: str, summary: str, *details: str) -> StepResult:
    return StepResult(step, True, summary, None, tuple(details))


def failed(step: str, summary: str, fix: str, *details: str) -> StepResult:
    return StepResult(step, False, summary, fix, tuple(details))


def skipped(step: str) -> StepResult:
    return StepResult(step, None, "skipped: an earlier step failed")


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


def _identity(credentials: ClientCredentials) -> probes.ClientIdentity:
    return probes.ClientIdentity(credentials.ca_pem, credentials.cert_pem, credentials.key_pem)


# ---------------------------------------------------------------------------------------------- reading the PKI


def load_material(spec: Spec, device: Device) -> DoctorMaterial:
    """Reads the spec's PKI without writing to it (PkiStore.open with create=False, no passphrase: no CA key is
    touched), and the broker trust the spec brings (checked by generator.broker.trust). Raises UserError when
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


# ---------------------------------------------------------------------------------------------- names (pure)


def cert_names(cert: x509.Certificate) -> list[str]:
    """What a cert can be matched against, for messages: `DNS:x`, `IP:y`, and `CN=z`."""
    names = [f"DNS:{n}" for n in _san_values(cert, x509.DNSName)]
    names += [f"IP:{n}" for n in _san_values(cert, x509.IPAddress)]
    names += [f"CN={cn}" for cn in _common_names(cert)]
    return names


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _san_values(cert: x509.Certificate, kind: type) -> list[str]:
    san = _san(cert)
    return [str(value) for value in san.get_values_for_type(kind)] if san is not None else []  # type: ignore[arg-type]


def _common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _dns_pattern_matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return "." in name and name.split(".", 1)[1] == pattern[2:]
    return pattern == name


def mbedtls_accepts_name(cert: x509.Certificate, name: str) -> bool:
    """mbedTLS 2.28 (`x509_crt_verify_name`): with a SAN extension only its dNSName entries count (iPAddress
    entries are skipped, even for an IP), and the CN is ignored; without one, the CN is compared."""
    if _san(cert) is not None:
        return any(_dns_pattern_matches(pattern, name) for pattern in _san_values(cert, x509.DNSName))
    return any(_dns_pattern_matches(cn, name) for cn in _common_names(cert))


def openssl_accepts_name(cert: x509.Certificate, name: str) -> bool:
    """OpenSSL via Python's ssl: an IP matches iPAddress entries only; a host name matches dNSName entries (the CN
    only when the cert has no dNSName)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        dns_names = _san_values(cert, x509.DNSName)
        candidates = dns_names or _common_names(cert)
        return any(_dns_pattern_matches(pattern, name) for pattern in candidates)
    return any(ipaddress.ip_address(value) == address for value in _san_values(cert, x509.IPAddress))


def describe_cert(cert: x509.Certificate) -> str:
    return (f"subject {cert.subject.rfc4514_string()}, issuer {cert.issuer.rfc4514_string()}, serial "
            f"{cert.serial_number:X}, valid {_day(cert.not_valid_before_utc)} to {_day(cert.not_valid_after_utc)}")


def _day(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _validity_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now > cert.not_valid_after_utc:
        return f"expired on {_day(cert.not_valid_after_utc)}"
    if now < cert.not_valid_before_utc:
        return f"is not valid before {_day(cert.not_valid_before_utc)}"
    return None


# ---------------------------------------------------------------------------------------------- step 1 (pure)


def check_pki(spec: Spec, target: DoctorTarget, material: DoctorMaterial, now: dt.datetime) -> StepResult:
    """Each cert matches its key, chains to the CA, is in date and not revoked; the broker cert names the dialled
    host as mbedTLS 2.28 needs it; the CRL is signed by the issuing CA and not past nextUpdate."""
    device = target.device
    regenerate = "run `gen generate SPEC` (it issues what is missing and re-signs the CRL), then reload the broker"
    problems: list[tuple[str, str]] = []

    def add(summary: str, fix: str) -> None:
        problems.append((summary, fix))

    for ca, label in ((material.root_ca, "root CA"), (material.issuing_ca, "issuing CA")):
        when = _validity_problem(ca, now)
        if when:
            add(f"the {label} ({ca.subject.rfc4514_string()}) {when}",
                "the CA must be replaced: create a new PKI and re-provision every device")
    if not chains_to(material.issuing_ca, material.chain, material.root_ca):
        add("the issuing CA is not signed by the root CA", "restore pki/ from a backup")

    def check_leaf(item: CertAndKey, identity: str) -> None:
        if identity == device.id and device.makes_own_key:
            check_device_made_key(item)
            return
        then = " and reflash the device" if identity == device.id else " and reload the broker"
        renew = f"run `gen pki renew SPEC {identity}`, then `gen generate SPEC`{then}"
        new_key = f"run `gen pki renew SPEC {identity} --new-key`, then `gen generate SPEC`{then}"
        if item.cert is None:
            add(f"{item.name} has no readable certificate ({item.path})", regenerate)
            return
        if item.key_matches is None:
            add(f"{item.name} has no private key next to its certificate", regenerate)
        elif not item.key_matches:
            add(f"the certificate of {item.name} does not match its private key", new_key)
        if not issued_by(item.cert, material.issuing_ca):
            add(f"the certificate of {item.name} was not issued by this PKI's issuing CA "
                f"({item.cert.issuer.rfc4514_string()})", renew)
        when = _validity_problem(item.cert, now)
        if when:
            add(f"the certificate of {item.name} {when}", renew)
        in_crl = material.crl is not None and material.crl.get_revoked_certificate_by_serial_number(
            item.cert.serial_number) is not None
        if item.index_status == "revoked" or in_crl:
            add(f"the certificate of {item.name} (serial {item.cert.serial_number:X}) is revoked", new_key)

    def check_device_made_key(item: CertAndKey) -> None:
        """key_origin: device: the key is on the device, the certificate comes from provisioning."""
        provision = ("start `gen provision serve SPEC` beside the broker and power the device: it sends a CSR "
                     f"and gets its certificate (`gen provision allow SPEC --device {device.id}` if it had one before)")
        if item.cert is None:
            add(f"{item.name} makes its own key (key_origin: device) and has no certificate yet", provision)
            return
        if not issued_by(item.cert, material.issuing_ca):
            add(f"the certificate of {item.name} was not issued by this PKI's issuing CA", provision)
        when = _validity_problem(item.cert, now)
        if when:
            add(f"the certificate of {item.name} {when}", provision)
        in_crl = material.crl is not None and material.crl.get_revoked_certificate_by_serial_number(
            item.cert.serial_number) is not None
        if item.index_status == "revoked" or in_crl:
            add(f"the certificate of {item.name} (serial {item.cert.serial_number:X}) is revoked", provision)

    if material.broker is not None:
        check_leaf(material.broker, "broker")
    if material.broker is not None and material.broker.cert is not None:
        broker_cert = material.broker.cert
        if not mbedtls_accepts_name(broker_cert, target.server_name):
            add(f"the broker certificate does not name {target.server_name!r} as a dNSName, which mbedTLS 2.28 "
                f"needs (it holds {', '.join(cert_names(broker_cert))})",
                f"put {target.server_name} in broker.names (or broker.host) and {regenerate}")
    if device.uses_client_cert:
        assert material.device is not None
        check_leaf(material.device, device.id)
        if material.device.cert is not None and device.id not in _common_names(material.device.cert):
            add(f"the certificate of {material.device.name} has CN {_common_names(material.device.cert)}, "
                f"not the device id", f"run `gen pki renew SPEC {device.id} --new-key`")
    if device.uses_password and material.device_password is None:
        add(f"device {device.id} has no password in the PKI ({material.device_password_path})", regenerate)
    check_leaf(material.doctor, DOCTOR_IDENTITY)
    crl = material.crl
    if device.uses_client_cert:  # without client certs the broker reads no CRL
        for problem in _crl_problems(crl, material.issuing_ca, now):
            add(problem, regenerate)
    if problems:
        summary, fix = problems[0]
        return failed("pki", summary, fix, *(p[0] for p in problems[1:]))
    details = [f"broker: {describe_cert(material.broker.cert)}"] if material.broker and material.broker.cert else []
    if material.broker_trust_file is not None:
        details.append(f"devices trust {material.broker_trust_file} for the broker: "
                       + ", ".join(c.subject.rfc4514_string() for c in material.broker_trust))
    if material.device and material.device.cert:
        details.append(f"device: {describe_cert(material.device.cert)}")
    if device.uses_client_cert and crl is not None and crl.next_update_utc is not None:
        details.append(f"CRL: {len(list(crl))} revoked, next update {_day(crl.next_update_utc)}")
    what = "device cert, " if device.uses_client_cert else ""
    what += "password, " if device.uses_password else ""
    what += (f"broker cert (names {target.server_name}), " if material.broker is not None else
             f"broker CA file {material.broker_trust_file.name if material.broker_trust_file else ''}, ")
    return passed("pki", f"{what}doctor identity and CRL are in order",
                  *details)


def _crl_problems(crl: x509.CertificateRevocationList | None, issuing_ca: x509.Certificate,
                  now: dt.datetime) -> list[str]:
    if crl is None:
        return ["the CRL (pki/crl.pem) is missing or unreadable; Mosquitto needs it to verify client certs"]
    problems = []
    if crl.issuer != issuing_ca.subject or not crl.is_signature_valid(issuing_ca.public_key()):  # type: ignore[arg-type]
        problems.append("the CRL is not signed by this PKI's issuing CA")
    if crl.next_update_utc is None or now > crl.next_update_utc:
        when = _day(crl.next_update_utc) if crl.next_update_utc else "(none)"
        problems.append(f"the CRL is past its nextUpdate {when}: Mosquitto rejects every client cert")
    return problems


# ---------------------------------------------------------------------------------------------- steps 2-3


def run_resolve_step(target: DoctorTarget) -> StepResult:
    resolution = probes.resolve(target.dial_host, target.dial_port)
    return judge_resolution(target, resolution)


def judge_resolution(target: DoctorTarget, resolution: probes.Resolution) -> StepResult:
    via = " (--broker)" if target.overridden else ""
    if resolution.error:
        fix = ("check the address given to --broker" if target.overridden else
               f"add a DNS record (or an /etc/hosts line) for {target.dial_host}, or try "
               f"`gen doctor SPEC --broker IP:{target.dial_port}` to dial the broker directly")
        return failed("resolve", f"{target.dial_host}{via} does not resolve: {resolution.error}", fix)
    shown = ", ".join(resolution.addresses[:4])
    extra = f"; the device dials {target.server_name} and verifies that name" if target.overridden else ""
    return passed("resolve", f"{target.dial_host}{via} resolves to {shown}{extra}")


def run_tcp_step(target: DoctorTarget) -> StepResult:
    return judge_tcp(target, probes.tcp_connect(target.address))


def judge_tcp(target: DoctorTarget, outcome: probes.TcpOutcome) -> StepResult:
    where = f"{target.dial_host}:{target.dial_port}"
    if outcome.ok:
        return passed("tcp", f"connected to {where}")
    if outcome.kind == "refused":
        return failed("tcp", f"connection to {where} refused: nothing listens on port {target.dial_port}",
                      f"start the broker (`gen broker up SPEC`, or systemctl start mosquitto) and check that its "
                      f"listener uses port {target.dial_port}", outcome.message)
    if outcome.kind == "timeout":
        return failed("tcp", f"connection to {where} timed out: packets are dropped on the way",
                      f"open TCP port {target.dial_port} in the firewall between here and the broker, and check "
                      f"that the broker host is up", outcome.message)
    if outcome.kind == "unreachable":
        return failed("tcp", f"{where} is unreachable: no route to that network or host",
                      "check the address and this machine's network (VPN, subnet, WiFi)", outcome.message)
    return failed("tcp", f"connection to {where} failed: {outcome.message}", "check the address and the network")


# ---------------------------------------------------------------------------------------------- step 4


@dataclass(frozen=True)
class TlsFacts:
    """What the TLS probes saw (step 4)."""

    presented: probes.HandshakeOutcome       # OpenSSL without verification: what the server presents
    mbedtls: probes.HandshakeOutcome         # as the device: mbedTLS 2.28, TLS 1.2, the device's CA and name
    openssl: probes.HandshakeOutcome         # OpenSSL, verifying CA and name
    tls12: probes.HandshakeOutcome | None = None   # OpenSSL capped at TLS 1.2, no client cert (version check)
    plaintext_mqtt: bool = False             # the port answered a plaintext MQTT CONNECT


def run_tls_step(target: DoctorTarget, material: DoctorMaterial, now: dt.datetime) -> StepResult:
    client = _identity(material.probe_credentials())
    name = target.server_name
    presented = probes.openssl_handshake(target.address, name, client, verify=False)
    mbed = probes.mbedtls_handshake(target.address, name, client)
    openssl = probes.openssl_handshake(target.address, name, client)
    tls12 = None
    plaintext = False
    if not presented.ok and presented.kind in ("closed", "not-tls", "error"):
        plaintext = probes.speaks_plaintext_mqtt(target.address, target.probe_client_id)
    if presented.ok and not mbed.ok and mbed.kind != "verify-failed":
        tls12 = probes.openssl_handshake(target.address, name, None, verify=False, max_tls12=True)
    facts = TlsFacts(presented, mbed, openssl, tls12, plaintext)
    return judge_tls(target, material, facts, now)


def judge_tls(target: DoctorTarget, material: DoctorMaterial, facts: TlsFacts, now: dt.datetime) -> StepResult:
    port, name = target.dial_port, target.server_name
    use_generated = "serve OUT/broker/broker.pem and broker.key (`gen generate SPEC`, then install and restart the broker)"
    if not facts.presented.ok and (facts.presented.reason or "") not in CLIENT_CERT_ALERTS:
        raw = f"OpenSSL: {facts.presented.message}"
        if facts.plaintext_mqtt:
            return failed("tls", f"port {port} speaks plaintext MQTT, not TLS",
                          f"give the listener on port {port} both certfile and keyfile (with only one of them "
                          f"Mosquitto silently serves plaintext), or dial the TLS port; use OUT/broker/mosquitto.conf",
                          raw)
        if facts.presented.kind == "not-tls":
            return failed("tls", f"port {port} does not speak TLS (the reply is not a TLS record: "
                                 f"{facts.presented.reason})", f"check that port {port} is the broker's TLS listener",
                          raw)
        if _is_version_refusal(facts.presented):
            return _version_refused(port, raw)
        return failed("tls", f"the TLS handshake on port {port} failed before the broker sent a certificate",
                      "look at the broker's log for the reason (e.g. `OpenSSL Error`), and check its TLS listener", raw)
    server_cert = x509.load_der_x509_certificate(facts.presented.server_cert_der) if \
        facts.presented.server_cert_der else None
    raw_errors = (f"mbedTLS 2.28: {facts.mbedtls.kind} {facts.mbedtls.message}".rstrip(),
                  f"OpenSSL: {facts.openssl.kind} {facts.openssl.message}".rstrip())
    if "verify-failed" in (facts.mbedtls.kind, facts.openssl.kind):
        finding = diagnose_server_cert(server_cert, material, name, now) if server_cert else None
        if finding is not None:
            summary, fix, details = finding
            return failed("tls", summary, fix, *details, *raw_errors)
        return failed("tls", "the broker's certificate chain does not verify against the device's CA",
                      f"the broker's certfile must hold its cert followed by the issuing CA; {use_generated}",
                      *raw_errors)
    if not facts.mbedtls.ok:
        if facts.tls12 is not None and _is_version_refusal(facts.tls12):
            return _version_refused(port, *raw_errors, f"OpenSSL capped at TLS 1.2: {facts.tls12.message}")
        if not target.device.uses_client_cert:
            return failed("tls", f"the device's TLS handshake (mbedTLS 2.28) fails: {facts.mbedtls.message}",
                          "check the broker's `ciphers` / `tls_version` settings against OUT/broker/mosquitto.conf",
                          *raw_errors)
        # The broker ended a handshake whose server side verified (no verify error): a client cert problem,
        # which step 5 names.
    if not facts.openssl.ok:
        return failed("tls", f"the OpenSSL handshake fails ({facts.openssl.message})",
                      "check the broker's TLS listener settings against OUT/broker/mosquitto.conf", *raw_errors)
    versions = f"mbedTLS 2.28 ({facts.mbedtls.version})" if facts.mbedtls.ok else "mbedTLS 2.28 (cert verified)"
    seen = [f"server cert: {describe_cert(server_cert)}"] if server_cert else []
    if not facts.mbedtls.ok:
        seen.append(f"the broker then ended the device's handshake: {facts.mbedtls.message} (see the next step)")
    return passed("tls", f"the broker's cert verifies for {name} with {versions} and OpenSSL "
                         f"({facts.openssl.version})", *seen)


def diagnose_server_cert(cert: x509.Certificate, material: DoctorMaterial, name: str,
                         now: dt.datetime) -> tuple[str, str, tuple[str, ...]] | None:
    """Why a server cert fails verification, by name: another CA, expired / not yet valid, or the dialled name
    missing (including the IP-only-SAN cert mbedTLS 2.28 rejects while OpenSSL accepts)."""
    ours = material.issuing_ca
    holds = ", ".join(cert_names(cert)) or "no names"
    if material.broker_trust:
        return _diagnose_brought_trust(cert, material, name, now)
    if not (issued_by(cert, ours) or issued_by(cert, material.root_ca)):
        return (f"the broker serves a certificate from another CA: issued by {cert.issuer.rfc4514_string()}, "
                f"but the device trusts {material.root_ca.subject.rfc4514_string()}",
                "serve OUT/broker/broker.pem and broker.key from `gen generate SPEC` (then restart the broker), or "
                "regenerate the firmware with the CA that signed the broker's cert",
                (f"server cert: {describe_cert(cert)}",
                 f"device trusts: {material.root_ca.subject.rfc4514_string()} (issuing CA "
                 f"{ours.subject.rfc4514_string()})"))
    when = _validity_problem(cert, now)
    if when:
        return (f"the broker's certificate {when}",
                "renew the broker cert (`gen pki renew SPEC broker`, `gen generate SPEC`), install it and restart the broker; if "
                "the dates look right, check this machine's and the broker's clocks",
                (f"server cert: {describe_cert(cert)}",))
    mbed_ok, openssl_ok = mbedtls_accepts_name(cert, name), openssl_accepts_name(cert, name)
    if not mbed_ok or not openssl_ok:
        names_fix = (f"list {name} in broker.names (the generator writes every IP also as a dNSName), "
                     f"run `gen generate SPEC`, install the new broker cert and restart the broker")
        if not mbed_ok and openssl_ok:
            ip_note = (f"; the cert has {name} only as an iPAddress SAN, which mbedTLS 2.28 ignores"
                       if f"IP:{name}" in cert_names(cert) else "")
            return (f"the device (mbedTLS 2.28) rejects the broker's cert for {name}, OpenSSL accepts it: "
                    f"{name} is not a dNSName in the cert{ip_note}", names_fix, (f"the cert holds: {holds}",))
        if mbed_ok and not openssl_ok:
            return (f"OpenSSL (mosquitto_pub, Python backends) rejects the broker's cert for {name}, the device "
                    f"(mbedTLS 2.28) accepts it: OpenSSL matches an IP only against iPAddress SANs",
                    names_fix, (f"the cert holds: {holds}",))
        return (f"the name the device dials, {name}, is not in the broker's certificate (it holds {holds})",
                names_fix, (f"server cert: {describe_cert(cert)}",))
    return None


def _diagnose_brought_trust(cert: x509.Certificate, material: DoctorMaterial, name: str,
                            now: dt.datetime) -> tuple[str, str, tuple[str, ...]]:
    """The broker's cert does not verify against the CA file the spec names (broker.ca_file)."""
    trusted = ", ".join(c.subject.rfc4514_string() for c in material.broker_trust)
    when = _validity_problem(cert, now)
    if when:
        problem = f"the broker's certificate {when}"
    elif not mbedtls_accepts_name(cert, name):
        problem = f"the broker's certificate does not name {name} as a dNSName, which mbedTLS 2.28 needs"
    else:
        problem = (f"the broker's certificate (issued by {cert.issuer.rfc4514_string()}) does not chain to "
                   f"{material.broker_trust_file}")
    return (problem, f"serve a broker certificate for {name} from the CA in {material.broker_trust_file}, with its "
                     "intermediates after it in the certfile (or set broker.ca_file to the CA that did sign it, and "
                     "regenerate and reflash the firmware)",
            (f"server cert: {describe_cert(cert)}", f"devices trust: {trusted}", f"the cert holds: "
             f"{', '.join(cert_names(cert)) or 'no names'}"))


def _is_version_refusal(outcome: probes.HandshakeOutcome) -> bool:
    return (outcome.reason or "") in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL",
                                      "NO_PROTOCOLS_AVAILABLE", "TLSV1_ALERT_INSUFFICIENT_SECURITY")


def _version_refused(port: int, *details: str) -> StepResult:
    return failed("tls", f"the broker on port {port} refuses TLS 1.2, the highest version the ESP32's mbedTLS 2.28 "
                         "speaks", "set `tls_version tlsv1.2` on the listener (OUT/broker/mosquitto.conf does)",
                  *details)


# ---------------------------------------------------------------------------------------------- step 5



def run_client_cert_step(target: DoctorTarget, material: DoctorMaterial, now: dt.datetime) -> StepResult:
    if not target.device.uses_client_cert:
        return passed("client-cert", f"not used: device {target.device.id} authenticates with a password only")
    # TLS 1.3 reports a refused client cert only at the first read, as a bare EOF; capped at TLS 1.2 the broker's
    # refusal arrives during the handshake as an alert that names the reason.
    outcome = probes.openssl_handshake(target.address, target.server_name,
                                       _identity(material.device_credentials()), max_tls12=True)
    return judge_client_cert(target, material, outcome, now)


def judge_client_cert(target: DoctorTarget, material: DoctorMaterial, outcome: probes.HandshakeOutcome,
                      now: dt.datetime) -> StepResult:
    device = target.device
    cert = material.device.cert if material.device else None
    subject = cert.subject.rfc4514_string() if cert else device.id
    renew = f"`gen pki renew SPEC {device.id} --new-key`, `gen generate SPEC`, then reflash the device"
    if outcome.ok:
        return passed("client-cert", f"the broker accepts the device cert ({subject}) in a TLS 1.2 handshake")
    reason = outcome.reason or ""
    meaning = CLIENT_CERT_ALERTS.get(reason)
    details = (f"OpenSSL (TLS 1.2): {outcome.message}",)
    if meaning is None:
        return failed("client-cert", f"the broker dropped the connection for a reason other than a refused cert: "
                                     f"{outcome.message}",
                      "read the broker's log for this connection (`OpenSSL Error` / `disconnected` lines)", *details)
    summary = f"the broker refuses the device cert ({subject}): {meaning}"
    if reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED" and cert is not None and _validity_problem(cert, now) is None:
        return failed("client-cert", summary + f", although it is valid until {_day(cert.not_valid_after_utc)}",
                      "the broker's CRL is past its nextUpdate (or the broker's clock is wrong): run "
                      "`gen generate SPEC`, install OUT/broker/crl.pem and reload the broker", *details)
    if reason == "TLSV1_ALERT_UNKNOWN_CA":
        return failed("client-cert", summary, "install OUT/broker/ca.pem (issuing + root CA of this project) as the "
                                              "listener's cafile and restart the broker", *details)
    return failed("client-cert", summary, renew, *details)


# ---------------------------------------------------------------------------------------------- steps 6-7


def _mqtt_login(device: Device, credentials: ClientCredentials) -> tuple[str | None, str | None]:
    """(username, password) as the firmware sends them: with mtls alone the cert CN is the username."""
    if device.uses_password:
        return device.username, credentials.password
    return None, None


def run_mqtt_connect_step(target: DoctorTarget, material: DoctorMaterial) -> StepResult:
    credentials = material.device_credentials()
    username, password = _mqtt_login(target.device, credentials)
    try:
        with probes.open_tls(target.address, target.server_name, _identity(credentials)) as sock:
            session = MqttSession(sock)
            code = session.connect(target.probe_client_id, username=username, password=password)
            if code == 0:
                session.disconnect()
    except (ConnectionClosed, OSError) as error:
        return judge_connack(target, None, str(error) or type(error).__name__)
    return judge_connack(target, code, None)


def judge_connack(target: DoctorTarget, code: int | None, closed: str | None) -> StepResult:
    device = target.device
    who = f"client id {target.probe_client_id}" + (f", user {device.username}" if device.uses_password else
                                                  f", user = cert CN {device.id}")
    if code is None:
        hint = ("the broker refused the client cert after the handshake (TLS 1.3 shows it only now)"
                if "certificate" in (closed or "").lower() or "alert" in (closed or "").lower() else
                "the broker closed the connection before answering CONNECT")
        return failed("mqtt-connect", f"no CONNACK: {hint}",
                      "read the broker's log for this client (`disconnected` / `OpenSSL Error` lines)", closed or "")
    if code == 0:
        return passed("mqtt-connect", f"CONNACK 0, connection accepted ({who})")
    meaning = CONNACK_MEANINGS.get(code, f"unknown return code {code}")
    install_passwd = (f"run `gen generate SPEC`, install OUT/broker/passwd and reload the broker, so it holds the "
                      f"password in pki/private/passwords/{device.username}.txt (reflash a device that has an older one)")
    if device.uses_password and code in (4, 5):
        meaning += " (Mosquitto 2.0 says this for a wrong password or an unknown user)" if code == 5 else ""
        fix = install_passwd
    elif code == 5:
        meaning += " (the broker did not take the cert CN as the user name, and refuses anonymous clients)"
        fix = ("install OUT/broker/mosquitto.conf: an mtls listener needs `use_identity_as_username true`; "
               "then restart the broker")
    elif code == 4:
        fix = "the broker expects a password this device does not send: install OUT/broker/mosquitto.conf"
    else:
        fix = {1: "the broker is too old for MQTT 3.1.1; use Mosquitto 1.4 or later",
               2: "allow the client id: check `clientid_prefixes` / `allow_zero_length_clientid` in mosquitto.conf",
               3: "the broker is overloaded or shutting down; read its log and retry"}.get(code, "read the broker's log")
    return failed("mqtt-connect", f"CONNACK {code}: {meaning} ({who})", fix)


def concrete_topic(topic_filter: str) -> str:
    """A topic a subscription to `topic_filter` receives: each '+' and a trailing '#' become `doctor`."""
    topic = "/".join("doctor" if level in ("+", "#") else level for level in topic_filter.split("/"))
    assert filter_matches(topic_filter, topic)
    return topic


def device_publish_topics(device: Device) -> tuple[str, ...]:
    """Every topic the device publishes to: its publish topics and its status topic."""
    return tuple(dict.fromkeys([*(p.topic for p in device.publish), device.status.topic]))


@dataclass(frozen=True)
class RoundTrip:
    direction: str                   # "publish" (device -> doctor) or "receive" (doctor -> device)
    topic: str                       # the concrete topic used
    topic_filter: str                # the spec's topic or filter
    delivered: bool
    sender_echo: bool | None = None  # when not delivered: did the sender's own probe client get it back?


def run_presence_probe(target: DoctorTarget, material: DoctorMaterial) -> bytes | None:
    """The device's retained status as the doctor's own identity reads it; None when there is none or the doctor
    cannot log in (then the device steps probe as usual and say what is wrong)."""
    topic = target.device.status.topic
    credentials = material.doctor_credentials()
    try:
        with probes.open_tls(target.address, target.server_name, _identity(credentials)) as sock:
            session = MqttSession(sock)
            username, password = doctor_login(target.device, credentials)
            if session.connect(f"{DOCTOR_IDENTITY}-presence", username=username, password=password) != 0:
                return None
            session.subscribe([(topic, 0)])
            session.ping()   # the retained message is sent after the SUBACK and before the PINGRESP
            session.disconnect()
    except (ConnectionClosed, OSError):
        return None
    retained = [m.payload for m in session.received if m.topic == topic and m.retain]
    return retained[-1] if retained else None


def judge_presence(target: DoctorTarget, retained_status: bytes | None) -> list[StepResult]:
    """When the device says it is online, its own connection proves CONNECT, and its birth message came through
    the ACL; probing as it would disconnect it. Otherwise nothing (the probes run)."""
    device = target.device
    if retained_status != device.status.online.encode():
        return []
    online = device.status.online
    return [
        passed("mqtt-connect", f"device {device.id} is connected right now (its retained {device.status.topic} is "
                               f"{online!r}): its own connection proves CONNECT. Not probed as {device.id}, which "
                               "would disconnect it (the broker binds the client id to the user name)"),
        passed("acl", f"device {device.id}'s {online!r} on {device.status.topic} reached the doctor through the "
                      "ACL; its other topics are not probed while it is connected (--take-over probes them, "
                      "disconnecting it once)"),
    ]


def run_acl_step(target: DoctorTarget, material: DoctorMaterial) -> StepResult:
    device = target.device
    device_credentials, doctor_credentials = material.device_credentials(), material.doctor_credentials()
    username, password = _mqtt_login(device, device_credentials)
    nonce = random_tokens.token_hex(6)
    trips: list[RoundTrip] = []
    try:
        with probes.open_tls(target.address, target.server_name, _identity(device_credentials)) as device_sock, \
                probes.open_tls(target.address, target.server_name, _identity(doctor_credentials)) as doctor_sock:
            device_session, doctor_session = MqttSession(device_sock), MqttSession(doctor_sock)
            code = device_session.connect(target.probe_client_id, username=username, password=password)
            if code != 0:
                return judge_connack(target, code, None)
            doctor_username, doctor_password = doctor_login(device, doctor_credentials)
            code = doctor_session.connect(f"{DOCTOR_IDENTITY}-{nonce}", username=doctor_username,
                                          password=doctor_password)
            if code != 0:
                return failed("acl", f"the doctor's identity {DOCTOR_IDENTITY} cannot log in to prove the round trip: "
                                     f"CONNACK {code}, "
                                     f"{CONNACK_MEANINGS.get(code, 'unknown code')}",
                              "install OUT/broker/ (passwd, acl, ca.pem) from `gen generate SPEC` and reload the broker")
            for topic in device_publish_topics(device):
                trips.append(_round_trip("publish", topic, topic, device_session, doctor_session, nonce,
                                         echo=device_may_subscribe(device, topic)))
            for subscription in device.subscribe:
                topic = concrete_topic(subscription.filter)
                trips.append(_round_trip("receive", topic, subscription.filter, doctor_session, device_session,
                                         nonce, receiver_filter=subscription.filter))
            device_session.disconnect()
            doctor_session.disconnect()
    except (ConnectionClosed, OSError) as error:
        return failed("acl", f"the broker closed a probe connection during the round trip: {error}",
                      "read the broker's log for clients ending in -doctor")
    return judge_acl(target, trips)


def _round_trip(direction: str, topic: str, topic_filter: str, sender: MqttSession, receiver: MqttSession,
                nonce: str, *, receiver_filter: str | None = None, echo: bool = True) -> RoundTrip:
    """`sender` publishes a non-retained QoS 1 probe on `topic`; `receiver`, subscribed first, must get it.
    After the PUBACK the broker has routed the message, so the receiver's PINGRESP comes after it (a barrier,
    not a timer). `echo` False: the sender may not subscribe to `topic` (RabbitMQ would close it), so no echo."""
    payload = PROBE_PAYLOAD + f"{nonce} {direction} {topic}".encode()
    receiver.subscribe([(receiver_filter or topic, 1)])
    if echo:
        sender.subscribe([(topic, 1)])           # the echo tells a denied publish from a denied delivery
    receiver.ping()
    sender.ping()
    sender.publish(topic, payload, qos=1)
    delivered = _await_probe(receiver, topic, payload)
    echoed = _await_probe(sender, topic, payload) if not delivered and echo else None
    return RoundTrip(direction, topic, topic_filter, delivered, echoed)


def _await_probe(session: MqttSession, topic: str, payload: bytes, barriers: int = 2) -> bool:
    def seen(message: Message) -> bool:
        return message.topic == topic and message.payload == payload

    for _ in range(barriers):
        session.ping()
        if any(seen(m) for m in session.received):
            session.received[:] = [m for m in session.received if not seen(m)]
            return True
    return False


def judge_acl(target: DoctorTarget, trips: list[RoundTrip]) -> StepResult:
    device = target.device
    for trip in trips:
        if trip.delivered:
            continue
        if trip.direction == "publish":
            if trip.sender_echo:
                summary = (f"the broker drops what the device publishes on {trip.topic} before the doctor gets it: "
                           f"the ACL denies user {DOCTOR_IDENTITY} read on {trip.topic}")
                fix = f"give user {DOCTOR_IDENTITY} `topic readwrite` on {trip.topic} in the ACL (OUT/broker/acl)"
            else:
                summary = (f"the ACL denies device {device.id} publishing on {trip.topic} "
                           f"(Mosquitto drops it silently; with `log_type debug` its log says `Denied PUBLISH`)")
                fix = (f"give user {device.username} `topic write {trip.topic}` in the ACL: install OUT/broker/acl from "
                       f"`gen generate SPEC` and reload the broker")
            return failed("acl", summary, fix)
        if trip.sender_echo:
            summary = (f"the device does not receive messages on {trip.topic_filter} (probe topic {trip.topic}): "
                       f"the ACL denies user {device.username} read")
            fix = (f"give user {device.username} `topic read {trip.topic_filter}` in the ACL: install OUT/broker/acl "
                   f"from `gen generate SPEC` and reload the broker")
        else:
            summary = (f"the doctor cannot publish on {trip.topic} to prove the device's subscription "
                       f"{trip.topic_filter}: the ACL denies user {DOCTOR_IDENTITY}")
            fix = f"give user {DOCTOR_IDENTITY} `topic readwrite` on {trip.topic} in the ACL (OUT/broker/acl)"
        return failed("acl", summary, fix)
    published = [t.topic for t in trips if t.direction == "publish"]
    received = [t.topic_filter for t in trips if t.direction == "receive"]
    details = [f"device -> doctor: {t}" for t in published] + [f"doctor -> device: {f}" for f in received]
    return passed("acl", f"round trips through the broker: the device published on {len(published)} topic(s) and "
                         f"received on {len(received)} filter(s); nothing retained", *details)


# ---------------------------------------------------------------------------------------------- the walk


def run_doctor(spec: Spec, target: DoctorTarget, *, now: dt.datetime | None = None, spec_label: str | None = None,
               material_loader: Callable[[Spec, Device], DoctorMaterial] = load_material,
               take_over: bool = False) -> list[StepResult]:
    """Every step in order; the first failure ends the walk and the rest are reported as skipped. Fixes name the
    spec as `spec_label` (what the user typed; default: the spec's path). A device that says it is online is not
    probed as itself unless `take_over` (see the module docstring)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    results: list[StepResult] = []
    material: DoctorMaterial | None = None
    try:
        material = material_loader(spec, target.device)
    except UserError as error:
        results.append(failed("pki", f"the PKI cannot be read: {error.message}",
                              error.hint or "run `gen generate SPEC` first"))
    if material is not None:
        results.append(check_pki(spec, target, material, now))
        step_functions: list[Callable[[], StepResult]] = [
            lambda: run_resolve_step(target),
            lambda: run_tcp_step(target),
            lambda: run_tls_step(target, material, now),  # type: ignore[arg-type]
            lambda: run_client_cert_step(target, material, now),  # type: ignore[arg-type]
        ]
        for step_function in step_functions[:3] if material.device_key_on_device else step_functions:
            if not results[-1].ok:
                break
            results.append(step_function())
        if results[-1].ok and material.device_key_on_device:
            results += [StepResult(step, None, "not probed as the device: its key lives only on the device "
                                   "(key_origin: device); its own log shows whether it connects")
                        for step in ("client-cert", "mqtt-connect", "acl")]
        elif results[-1].ok:
            online = [] if take_over else judge_presence(target, run_presence_probe(target, material))
            results += online
            for step_function in () if online else (lambda: run_mqtt_connect_step(target, material),  # type: ignore[arg-type]
                                                    lambda: run_acl_step(target, material)):  # type: ignore[arg-type]
                if not results[-1].ok:
                    break
                results.append(step_function())
    done = {result.step for result in results}
    results += [skipped(step) for step, _ in STEPS if step not in done]
    label = spec_label or str(spec.path)
    return [replace(r, fix=r.fix.replace("SPEC", label)) if r.fix else r for r in results]


def select_device(spec: Spec, device_id: str | None) -> Device:
    if device_id is not None:
        return spec.device(device_id)
    if len(spec.devices) == 1:
        return spec.devices[0]
    raise UserError(f"{spec.path} has {len(spec.devices)} devices; say which one to check",
                    hint=f"add --device ID, one of: {', '.join(d.id for d in spec.devices)}")


def report_json(target: DoctorTarget, results: list[StepResult]) -> dict[str, Any]:
    return {
        "device": target.device.id,
        "server_name": target.server_name,
        "dial": f"{target.dial_host}:{target.dial_port}",
        "ok": all(result.ok for result in results),
        "steps": [result.to_json() for result in results],
    }


__all__ = ["STEPS", "StepResult", "DoctorTarget", "DoctorMaterial", "load_material", "run_doctor", "check_pki",
           "judge_tls", "judge_client_cert", "judge_connack", "judge_acl", "mbedtls_accepts_name",
           "openssl_accepts_name", "select_device", "report_json", "parse_host_port", "concrete_topic"]
