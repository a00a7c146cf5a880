"""What `gen provision serve` decides for each request: pure functions of the request, what the spec says about the
device, and what the PKI's index says about it (generator.pki.index.DeviceStanding). No I/O: the service
(generator.provision.service) gathers the facts, asks `decide_csr` / `decide_confirm`, and carries the decision out.

A CSR is accepted only for an id the spec lists and whose key the device makes itself, with a valid signature over
an EC P-256 key, subject exactly CN=<id>, and either no live identity (first boot, on the bootstrap channel) or a
reason to rotate (an operator's request, the live cert inside its renewal window by the service's own clock).
A CSR for the key of the device's pending cert gets that same cert again (the device rebooted, or the answer was
lost); any other key certified before is refused (a replayed request). The first failing check refuses, with the
reason the device logs.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from generator.pki.index import DeviceStanding
from generator.pki.x509_facts import public_key_sha256
from generator.spec.provisioning_protocol import Request

RENEW_JITTER_FRACTION = 0.1       # renew-at moves earlier by up to a tenth of the renewal window, so a fleet
RENEW_JITTER_CAP_S = 86400        # issued together does not renew together; at most a day
REFUSAL_RETRY_S = 600             # what a refused device is told: do not ask again for ten minutes
# Certificates a device may get from its CSRs without confirming any: a device that loses power between its
# request and its switch asks again with a fresh key; a stolen bootstrap secret or key asking for ever does not get
# a new certificate (a grown CRL, a broker reload) every few seconds. Beyond it an operator decides.
MAX_UNCONFIRMED_ISSUES = 3

# DER of the ecdsa-with-SHA* AlgorithmIdentifier OIDs (RFC 5758: their parameters MUST be absent).
_ECDSA_OIDS = (bytes.fromhex("06082a8648ce3d040302"), bytes.fromhex("06082a8648ce3d040303"),
               bytes.fromhex("06082a8648ce3d040304"))
_DER_NULL = b"\x05\x00"


@dataclass(frozen=True)
class DeviceFacts:
    """What the spec and the PKI say about the id a request names."""

    in_spec: bool
    makes_own_key: bool
    standing: DeviceStanding | None     # None when the id is not a device of the spec
    validity_days: int = 0
    renew_before_days: int = 0


@dataclass(frozen=True)
class Decision:
    action: str                       # "issue" | "resend" | "refuse" | "confirm" | "confirmed" | "abandon"
    reason: str = ""                  # refuse: words for the device and the log
    public_key: ec.EllipticCurvePublicKey | None = None   # issue
    key_sha256: str = ""


# ---------------------------------------------------------------------------------------------- the CSR


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """The CSR, after dropping a NULL parameter from an ECDSA signatureAlgorithm (mbedTLS before 2.28.5 writes one,
    which RFC 5758 forbids and cryptography 50 refuses). Only the outer AlgorithmIdentifier is touched: it lies
    outside the signed CertificationRequestInfo, so the signature still covers exactly what the device signed.
    Raises ValueError when it is not a CSR."""
    return x509.load_pem_x509_csr(normalised_csr_pem(pem))


def normalised_csr_pem(pem: bytes) -> bytes:
    """`pem` with an ECDSA signatureAlgorithm's NULL parameter removed (see load_csr); other CSRs unchanged."""
    text = pem.decode("ascii", "replace")
    begin, end = "-----BEGIN CERTIFICATE REQUEST-----", "-----END CERTIFICATE REQUEST-----"
    if begin not in text or end not in text:
        return pem
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
        fixed = _without_ecdsa_null(der)
    except ValueError:
        return pem
    if fixed == der:
        return pem
    encoded = base64.b64encode(fixed).decode()
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    return (begin + "\n" + "\n".join(lines) + "\n" + end + "\n").encode()


def _der_item(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `at`."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    count = first & 0x7F
    if not 1 <= count <= 3 or at + 2 + count > len(data):
        raise ValueError("bad DER length")
    length = int.from_bytes(data[at + 2:at + 2 + count], "big")
    start = at + 2 + count
    if start + length > len(data):
        raise ValueError("truncated DER")
    return tag, start, start + length


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _without_ecdsa_null(der: bytes) -> bytes:
    tag, start, end = _der_item(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("not a DER SEQUENCE")
    _, _, info_end = _der_item(der, start)                  # CertificationRequestInfo (signed: left alone)
    alg_tag, alg_start, alg_end = _der_item(der, info_end)  # signatureAlgorithm
    if alg_tag != 0x30:
        raise ValueError("no AlgorithmIdentifier")
    algorithm = der[alg_start:alg_end]
    oid = next((o for o in _ECDSA_OIDS if algorithm.startswith(o)), None)
    if oid is None or algorithm[len(oid):] != _DER_NULL:
        return der
    new_algorithm = b"\x30" + _der_length(len(oid)) + oid
    content = der[start:info_end] + new_algorithm + der[alg_end:end]
    return b"\x30" + _der_length(len(content)) + content


def csr_problem(csr: x509.CertificateSigningRequest, device_id: str) -> str | None:
    """Why this CSR cannot be signed for `device_id`, or None."""
    if not csr.is_signature_valid:
        return "bad CSR signature"
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        if isinstance(key, rsa.RSAPublicKey):
            return f"not an EC P-256 key (RSA {key.key_size})"
        if isinstance(key, ec.EllipticCurvePublicKey):
            return f"not an EC P-256 key ({key.curve.name})"
        return f"not an EC P-256 key ({type(key).__name__})"
    if not isinstance(csr.signature_hash_algorithm, hashes.SHA256):
        name = csr.signature_hash_algorithm.name if csr.signature_hash_algorithm else "none"
        return f"the CSR is signed with {name}, not SHA-256"
    names = [attribute for attribute in csr.subject]
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or len(common_names) != 1:
        return f"the CSR's subject must be CN={device_id} alone, not {csr.subject.rfc4514_string()!r}"
    subject = str(common_names[0].value)
    if subject != device_id:
        return f"CSR is for {subject!r}, not {device_id!r}"
    return None


# ---------------------------------------------------------------------------------------------- decisions


def _unknown(facts: DeviceFacts, device_id: str) -> str | None:
    if not facts.in_spec:
        return f"unknown device id {device_id!r} (not in the spec)"
    if not facts.makes_own_key:
        return f"device {device_id!r} does not make its own key (its spec says key_origin: host)"
    return None


def decide_csr(request: Request, channel: str, facts: DeviceFacts, csr_pem: bytes, *, now: dt.datetime,
               key_history: list, same_request_keys: set[str]) -> Decision:
    """The decision for a `csr` request. `key_history`: every index entry of the CSR key (any id);
    `same_request_keys`: digests of keys this (id, request id) was already answered for."""
    unknown = _unknown(facts, request.device_id)
    if unknown:
        return Decision("refuse", unknown)
    assert facts.standing is not None
    try:
        csr = load_csr(csr_pem)
    except ValueError:
        return Decision("refuse", "malformed CSR")
    problem = csr_problem(csr, request.device_id)
    if problem:
        return Decision("refuse", problem)
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    digest = public_key_sha256(key)
    standing = facts.standing
    if standing.pending is not None and standing.pending.key_sha256 == digest:
        return Decision("resend", key_sha256=digest)
    if key_history:
        return Decision("refuse", "key already used (a replayed request? make a fresh key)", key_sha256=digest)
    if same_request_keys and digest not in same_request_keys:
        return Decision("refuse", "this request id was answered for another key", key_sha256=digest)
    if channel == "bootstrap":
        if not standing.bootstrap_open:
            return Decision("refuse", "already provisioned (this device has an identity; rotate over it)")
    else:
        live = standing.live
        if live is None:
            return Decision("refuse", "no live identity to rotate from (provision over the bootstrap listener)")
        window_opens = live.not_after - dt.timedelta(days=facts.renew_before_days)
        if standing.rotation_requested is None and now < window_opens:
            return Decision("refuse", f"renewal not due before {window_opens:%Y-%m-%dT%H:%MZ}")
    if standing.unconfirmed_issues >= MAX_UNCONFIRMED_ISSUES:
        return Decision("refuse", f"{standing.unconfirmed_issues} certificates issued and none confirmed: an operator "
                                  f"must allow more (gen provision allow SPEC --device {request.device_id})",
                        key_sha256=digest)
    return Decision("issue", public_key=key, key_sha256=digest)


def decide_confirm(request: Request, facts: DeviceFacts) -> Decision:
    """The decision for a `confirm` (the device connects with the new cert and has switched to it) or `failed`."""
    unknown = _unknown(facts, request.device_id)
    if unknown:
        return Decision("refuse", unknown)
    assert facts.standing is not None
    serial = int(request.serial, 16)
    pending, live = facts.standing.pending, facts.standing.live
    if request.type == "failed":
        if pending is not None and pending.serial == serial:
            return Decision("abandon")
        return Decision("refuse", f"no pending certificate {request.serial}")
    if pending is not None and pending.serial == serial:
        return Decision("confirm")
    if live is not None and live.serial == serial:
        return Decision("confirmed")
    return Decision("refuse", f"no pending certificate {request.serial}")


def renew_at(not_after: dt.datetime, renew_before_days: int, *, rng: random.Random | None = None) -> dt.datetime:
    """When the device should renew: renew_before_days before expiry, minus a jitter of up to a tenth of that
    (at most a day), so devices issued together spread their renewals."""
    window = dt.timedelta(days=renew_before_days)
    jitter_s = min(window.total_seconds() * RENEW_JITTER_FRACTION, RENEW_JITTER_CAP_S)
    return not_after - window - dt.timedelta(seconds=(rng or random.SystemRandom()).uniform(0, jitter_s))
