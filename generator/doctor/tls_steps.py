"""Steps 2-5 of `gen doctor`: the broker's name resolves, TCP connects, the TLS handshake succeeds with mbedTLS 2.28
(as on the ESP32) and OpenSSL, and the broker accepts the client certificate. Network I/O in `run_*`, every
diagnosis a pure `judge_*`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from generator.doctor import probes
from generator.doctor.material import DoctorMaterial, DoctorTarget, probe_identity
from generator.doctor.pki_check import day_text, describe_cert, validity_problem
from generator.doctor.results import StepResult, failed, passed
from generator.pki.name_matching import cert_names, mbedtls_accepts_name, openssl_accepts_name
from generator.pki.x509_facts import issued_by

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


@dataclass(frozen=True)
class TlsFacts:
    """What the TLS probes saw (step 4)."""

    presented: probes.HandshakeOutcome       # OpenSSL without verification: what the server presents
    mbedtls: probes.HandshakeOutcome         # as the device: mbedTLS 2.28, TLS 1.2, the device's CA and name
    openssl: probes.HandshakeOutcome         # OpenSSL, verifying CA and name
    tls12: probes.HandshakeOutcome | None = None   # OpenSSL capped at TLS 1.2, no client cert (version check)
    plaintext_mqtt: bool = False             # the port answered a plaintext MQTT CONNECT


def run_tls_step(target: DoctorTarget, material: DoctorMaterial, now: dt.datetime) -> StepResult:
    client = probe_identity(material.probe_credentials())
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
    use_generated = ("serve OUT/broker/broker.pem and broker.key "
                     "(`gen generate SPEC`, then install and restart the broker)")
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
    when = validity_problem(cert, now)
    if when:
        return (f"the broker's certificate {when}",
                "renew the broker cert (`gen pki renew SPEC broker`, `gen generate SPEC`), install it and restart the "
                "broker; if the dates look right, check this machine's and the broker's clocks",
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
    when = validity_problem(cert, now)
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


def run_client_cert_step(target: DoctorTarget, material: DoctorMaterial, now: dt.datetime) -> StepResult:
    if not target.device.uses_client_cert:
        return passed("client-cert", f"not used: device {target.device.id} authenticates with a password only")
    # TLS 1.3 reports a refused client cert only at the first read, as a bare EOF; capped at TLS 1.2 the broker's
    # refusal arrives during the handshake as an alert that names the reason.
    outcome = probes.openssl_handshake(target.address, target.server_name,
                                       probe_identity(material.device_credentials()), max_tls12=True)
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
    if reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED" and cert is not None and validity_problem(cert, now) is None:
        return failed("client-cert", summary + f", although it is valid until {day_text(cert.not_valid_after_utc)}",
                      "the broker's CRL is past its nextUpdate (or the broker's clock is wrong): run "
                      "`gen generate SPEC`, install OUT/broker/crl.pem and reload the broker", *details)
    if reason == "TLSV1_ALERT_UNKNOWN_CA":
        return failed("client-cert", summary, "install OUT/broker/ca.pem (issuing + root CA of this project) as the "
                                              "listener's cafile and restart the broker", *details)
    return failed("client-cert", summary, renew, *details)
