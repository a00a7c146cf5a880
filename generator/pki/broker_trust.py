"""Bring your own broker trust: a broker certificate that does not come from the project's PKI.

    trust = broker_trust(spec)          # None when the PKI issues the broker cert and devices trust its root
    trust.ca_pem                        # what devices embed to verify the broker (broker.ca_file)
    trust.cert_pem, trust.key_pem       # the broker's own cert (+ chain) and key (broker.cert_file/key_file), if any

The spec names the files (paths checked to exist by the spec rules); this module reads them and checks what TLS
stacks will check, before any firmware is built on them: the CA file holds CA certificates; the broker cert is a
server cert (EKU serverAuth), in date, chains to the CA file, names every broker name the way both OpenSSL and
mbedTLS 2.28 need (mbedTLS 2.28 matches dNSName entries only, even for an IP), and its key belongs to it. Each error
names the file and what to do. Pure checks (`cert_chain_problems`) are separate from reading (`broker_trust`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from generator.core.errors import UserError
from generator.core.hostnames import is_ip_address
from generator.pki.name_matching import mbedtls_accepts_name
from generator.pki.x509_facts import is_ca


@dataclass(frozen=True)
class BrokerTrust:
    ca_file: Path
    ca_pem: bytes                                   # every CA cert of broker.ca_file, as PEM
    ca_certs: tuple[x509.Certificate, ...]
    cert_pem: bytes | None = None                   # broker.cert_file: leaf, then its chain
    key_pem: bytes | None = field(default=None, repr=False)


def broker_trust(spec, *, now: dt.datetime | None = None) -> BrokerTrust | None:
    """The broker trust the spec brings (broker.ca_file, cert_file, key_file), read and checked; None without."""
    broker = spec.broker
    if broker.ca_file is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    ca_certs = _read_certs(broker.ca_file, "broker.ca_file")
    for cert in ca_certs:
        if not is_ca(cert):
            raise UserError(f"{broker.ca_file} holds {cert.subject.rfc4514_string()}, which is not a CA certificate",
                            hint="broker.ca_file must hold the CA that signed the broker's certificate (for a public "
                                 "CA: its root, e.g. ISRG Root X1), not the broker's own certificate")
        if now >= cert.not_valid_after_utc:
            raise UserError(f"the CA in {broker.ca_file} ({cert.subject.rfc4514_string()}) expired on "
                            f"{cert.not_valid_after_utc:%Y-%m-%d}", hint="get the CA's current certificate")
    ca_pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in ca_certs)
    if broker.cert_file is None:
        return BrokerTrust(broker.ca_file, ca_pem, tuple(ca_certs))
    chain = _read_certs(broker.cert_file, "broker.cert_file")
    key_pem = _read(broker.key_file, "broker.key_file")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise UserError(f"{broker.key_file} is encrypted; Mosquitto cannot read an encrypted key without a tty",
                        hint=f"decrypt it (openssl pkey -in {broker.key_file} -out broker.key) "
                             "and keep it 0600") from None
    except ValueError:
        raise UserError(f"{broker.key_file} is not a readable PEM private key") from None
    if key.public_key() != chain[0].public_key():
        raise UserError(f"{broker.key_file} is not the key of the certificate in {broker.cert_file}",
                        hint="give the key that belongs to the broker certificate")
    problems = cert_chain_problems(chain, ca_certs, broker.names, now)
    if problems:
        raise UserError(f"{broker.cert_file} will not be accepted by the devices: " + "; ".join(problems),
                        hint="use a broker certificate issued for every name in broker.host/broker.names by the CA "
                             "in broker.ca_file, with its intermediates after it in the file")
    return BrokerTrust(broker.ca_file, ca_pem, tuple(ca_certs), b"".join(
        cert.public_bytes(serialization.Encoding.PEM) for cert in chain), key_pem)


def cert_chain_problems(chain: Sequence[x509.Certificate], trusted: Sequence[x509.Certificate],
                        names: Sequence[str], now: dt.datetime) -> list[str]:
    """Why a TLS client trusting `trusted` rejects the server chain (leaf first) for some name: OpenSSL's rules
    (chain, dates, serverAuth, name) via cryptography's verifier, and mbedTLS 2.28's dNSName-only name match."""
    problems: list[str] = []
    leaf = chain[0]
    for name in names:
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name)) if is_ip_address(name) else x509.DNSName(name)
            verifier = (verification.PolicyBuilder().store(verification.Store(list(trusted))).time(now)
                        .build_server_verifier(subject))
            verifier.verify(leaf, list(chain[1:]))
        except verification.VerificationError as error:
            problems.append(f"for {name}: {error}")
            continue
        if not mbedtls_accepts_name(leaf, name):
            problems.append(f"{name} is not a dNSName in it (mbedTLS 2.28, the ESP32's TLS, matches only dNSName "
                            "entries, even for an IP address)")
    return problems


def _read(path: Path, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path} ({key}): {error.strerror}", hint="check the path and its permissions")


def _read_certs(path: Path, key: str) -> list[x509.Certificate]:
    data = _read(path, key)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UserError(f"{path} ({key}) is not a PEM certificate file",
                        hint="convert it: openssl x509 -inform der -in FILE -out FILE.pem") from None
    return certs
