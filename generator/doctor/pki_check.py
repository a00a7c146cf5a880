"""Step 1 of `gen doctor` (pure): the spec and its PKI agree. Each cert matches its key, chains to the CA, is in date
and not revoked; the broker cert names the dialled host as mbedTLS 2.28 needs it; the CRL is signed by the issuing
CA and not past nextUpdate."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from generator.doctor.material import CertAndKey, DoctorMaterial, DoctorTarget
from generator.doctor.results import StepResult, failed, passed
from generator.pki.name_matching import cert_names, common_names, mbedtls_accepts_name
from generator.pki.x509_facts import chains_to, issued_by
from generator.spec.contract import DOCTOR_IDENTITY
from generator.spec.model import Spec


def describe_cert(cert: x509.Certificate) -> str:
    return (f"subject {cert.subject.rfc4514_string()}, issuer {cert.issuer.rfc4514_string()}, serial "
            f"{cert.serial_number:X}, valid {day_text(cert.not_valid_before_utc)} "
            f"to {day_text(cert.not_valid_after_utc)}")


def day_text(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def validity_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now > cert.not_valid_after_utc:
        return f"expired on {day_text(cert.not_valid_after_utc)}"
    if now < cert.not_valid_before_utc:
        return f"is not valid before {day_text(cert.not_valid_before_utc)}"
    return None


def check_pki(spec: Spec, target: DoctorTarget, material: DoctorMaterial, now: dt.datetime) -> StepResult:
    """Each cert matches its key, chains to the CA, is in date and not revoked; the broker cert names the dialled
    host as mbedTLS 2.28 needs it; the CRL is signed by the issuing CA and not past nextUpdate."""
    device = target.device
    regenerate = "run `gen generate SPEC` (it issues what is missing and re-signs the CRL), then reload the broker"
    problems: list[tuple[str, str]] = []

    def add(summary: str, fix: str) -> None:
        problems.append((summary, fix))

    for ca, label in ((material.root_ca, "root CA"), (material.issuing_ca, "issuing CA")):
        when = validity_problem(ca, now)
        if when:
            add(f"the {label} ({ca.subject.rfc4514_string()}) {when}",
                "the CA must be replaced: create a new PKI and re-provision every device")
    if not chains_to(material.issuing_ca, material.chain, material.root_ca):
        add("the issuing CA is not signed by the root CA", "restore pki/ from a backup")

    def check_leaf(item: CertAndKey, identity: str) -> None:
        if identity == device.id and device.makes_own_key:
            problems.extend(_device_made_key_problems(item, device.id, material, now))
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
        when = validity_problem(item.cert, now)
        if when:
            add(f"the certificate of {item.name} {when}", renew)
        in_crl = material.crl is not None and material.crl.get_revoked_certificate_by_serial_number(
            item.cert.serial_number) is not None
        if item.index_status == "revoked" or in_crl:
            add(f"the certificate of {item.name} (serial {item.cert.serial_number:X}) is revoked", new_key)

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
        if material.device.cert is not None and device.id not in common_names(material.device.cert):
            add(f"the certificate of {material.device.name} has CN {common_names(material.device.cert)}, "
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
        details.append(f"CRL: {len(list(crl))} revoked, next update {day_text(crl.next_update_utc)}")
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
    if (crl.issuer != issuing_ca.subject
            or not crl.is_signature_valid(issuing_ca.public_key())):  # type: ignore[arg-type]
        problems.append("the CRL is not signed by this PKI's issuing CA")
    if crl.next_update_utc is None or now > crl.next_update_utc:
        when = day_text(crl.next_update_utc) if crl.next_update_utc else "(none)"
        problems.append(f"the CRL is past its nextUpdate {when}: Mosquitto rejects every client cert")
    return problems


def _device_made_key_problems(item: CertAndKey, device_id: str, material: DoctorMaterial,
                              now: dt.datetime) -> list[tuple[str, str]]:
    """key_origin: device: the key is on the device, the certificate comes from provisioning."""
    provision = ("start `gen provision serve SPEC` beside the broker and power the device: it sends a CSR "
                 f"and gets its certificate (`gen provision allow SPEC --device {device_id}` if it had one before)")
    if item.cert is None:
        return [(f"{item.name} makes its own key (key_origin: device) and has no certificate yet", provision)]
    problems = []
    if not issued_by(item.cert, material.issuing_ca):
        problems.append((f"the certificate of {item.name} was not issued by this PKI's issuing CA", provision))
    when = validity_problem(item.cert, now)
    if when:
        problems.append((f"the certificate of {item.name} {when}", provision))
    in_crl = material.crl is not None and material.crl.get_revoked_certificate_by_serial_number(
        item.cert.serial_number) is not None
    if item.index_status == "revoked" or in_crl:
        problems.append((f"the certificate of {item.name} (serial {item.cert.serial_number:X}) is revoked", provision))
    return problems
