"""Bring your own broker trust: a broker certificate from elsewhere (devices trust the CA file the spec names,
`gen doctor` checks it), and a broker you do not run (firmware and device identities only, no broker config)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import (BROKER_NAME, LOOPBACK, build_broker_project, client_tls_context, mbedtls_connect,
                      mqtt_connect_over, tls_connect, two_device_spec)
from generator.pki import profiles
from generator.cli import main
from generator.doctor.material import DoctorTarget
from generator.doctor.steps import run_doctor
from generator.output.generate import generate
from generator.spec import load_spec


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def public_ca() -> tuple[profiles.CertificateAuthority, profiles.CertificateAuthority]:
    """A CA that is not the project's, like a public or corporate one: a root and the intermediate that signs."""
    root_key, inter_key = profiles.generate_key("ec-p256"), profiles.generate_key("ec-p256")
    root = profiles.CertificateAuthority(profiles.build_root_ca(root_key, project="Public Trust", validity_days=3650,
                                                      now=now()), root_key)
    inter = profiles.CertificateAuthority(profiles.build_issuing_ca(inter_key, root=root, project="Public Trust R3",
                                                          validity_days=365, now=now()), inter_key)
    return root, inter


def broker_cert_from(issuer: profiles.CertificateAuthority, names=(BROKER_NAME, LOOPBACK)):
    key = profiles.generate_key("ec-p256")
    cert = profiles.issue_broker_cert(key.public_key(), list(names), issuer=issuer, validity_days=90, now=now(),
                                 project="Public Trust")
    return cert, key


def spec_with_broker_files(tmp_path, auth: str, *, cert=None, key=None, chain=(), ca=None, extra: str = ""):
    directory = tmp_path / "project"
    directory.mkdir()
    lines = []
    if ca is not None:
        (directory / "broker-ca.pem").write_bytes(pem(ca))
        lines.append("  ca_file: broker-ca.pem")
    if cert is not None:
        (directory / "broker-cert.pem").write_bytes(pem(cert) + b"".join(pem(c) for c in chain))
        (directory / "broker-key.pem").write_bytes(profiles.private_key_pem(key))
        lines += ["  cert_file: broker-cert.pem", "  key_file: broker-key.pem"]
    lines += [line for line in extra.splitlines() if line]
    text = two_device_spec(auth).replace("  port: 8883\n", "  port: 8883\n" + "".join(f"{l}\n" for l in lines))
    (directory / "device.yaml").write_text(text)
    return directory / "device.yaml"


def run_gen(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------- a cert from elsewhere


@pytest.mark.parametrize("auth", ["mtls", "password"])
def test_a_broker_cert_from_another_ca_is_served_and_devices_trust_that_ca_with_both_tls_stacks(
        auth, tmp_path, start_broker):
    root, inter = public_ca()
    cert, key = broker_cert_from(inter)
    spec_path = spec_with_broker_files(tmp_path, auth, cert=cert, key=key, chain=[inter.cert], ca=root.cert)
    project = build_broker_project(spec_path)
    assert (project.broker_dir / "broker.pem").read_bytes() == pem(cert) + pem(inter.cert)
    assert not (spec_path.parent / "pki" / "broker.pem").exists()      # the PKI issued no broker cert
    device = project.client("sensor-a")
    assert device.ca_pem == pem(root.cert)
    broker = start_broker(project.broker_dir)
    with tls_connect(broker, client_tls_context(device)) as sock:
        assert mqtt_connect_over(sock, device) == 0
    mbed = mbedtls_connect(broker, device)
    try:
        assert mqtt_connect_over(mbed, device) == 0
    finally:
        mbed.close()
    results = run_doctor(project.spec, DoctorTarget.for_device(project.spec, project.spec.device("sensor-a"),
                                                               f"{LOOPBACK}:{broker.port}"))
    assert all(r.ok for r in results), [(r.step, r.summary) for r in results]
    assert "broker-ca.pem" in " ".join(results[0].details)


def test_doctor_names_the_ca_file_when_the_broker_serves_a_cert_that_does_not_chain_to_it(tmp_path, start_broker):
    root, inter = public_ca()
    cert, key = broker_cert_from(inter)
    spec_path = spec_with_broker_files(tmp_path, "mtls", cert=cert, key=key, chain=[inter.cert], ca=root.cert)
    project = build_broker_project(spec_path)
    _, other_inter = public_ca()                                   # the operator installed a cert from another CA
    wrong, wrong_key = broker_cert_from(other_inter)
    (project.broker_dir / "broker.pem").write_bytes(pem(wrong) + pem(other_inter.cert))
    (project.broker_dir / "broker.key").write_bytes(profiles.private_key_pem(wrong_key))
    broker = start_broker(project.broker_dir)
    results = run_doctor(project.spec, DoctorTarget.for_device(project.spec, project.spec.device("sensor-a"),
                                                               f"{LOOPBACK}:{broker.port}"))
    failure = next(r for r in results if r.ok is False)
    assert failure.step == "tls" and "does not chain to" in failure.summary and "broker-ca.pem" in failure.summary


def test_a_broker_cert_without_the_dialled_name_is_refused_before_anything_is_written(tmp_path, capsys):
    root, inter = public_ca()
    cert, key = broker_cert_from(inter, names=["other.example.com"])
    spec_path = spec_with_broker_files(tmp_path, "mtls", cert=cert, key=key, chain=[inter.cert], ca=root.cert)
    code, _, err = run_gen(capsys, "generate", spec_path)
    assert code == 2 and "broker-cert.pem will not be accepted by the devices" in err and "for localhost" in err
    assert not (spec_path.parent / "build").exists() and not (spec_path.parent / "pki").exists()


def test_a_broker_cert_naming_an_ip_only_as_ipaddress_is_refused_for_mbedtls(tmp_path, capsys):
    root, inter = public_ca()
    key = profiles.generate_key("ec-p256")
    from cryptography import x509
    import ipaddress

    builder = profiles._leaf_profile(inter, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, False, now() - dt.timedelta(hours=1),
                                now() + dt.timedelta(days=30))
    cert = (builder.subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, BROKER_NAME)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(BROKER_NAME),
                                                        x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
            .sign(inter.key, profiles.hashes.SHA256()))
    spec_path = spec_with_broker_files(tmp_path, "mtls", cert=cert, key=key, chain=[inter.cert], ca=root.cert)
    code, _, err = run_gen(capsys, "generate", spec_path)
    assert code == 2 and "127.0.0.1 is not a dNSName in it (mbedTLS 2.28" in err


def test_a_ca_file_holding_the_brokers_own_cert_instead_of_its_ca_is_refused(tmp_path, capsys):
    root, inter = public_ca()
    cert, key = broker_cert_from(inter)
    spec_path = spec_with_broker_files(tmp_path, "mtls", cert=cert, key=key, chain=[inter.cert], ca=cert)
    code, _, err = run_gen(capsys, "generate", spec_path)
    assert code == 2 and "which is not a CA certificate" in err


def test_a_broker_key_that_is_not_the_certs_is_refused(tmp_path, capsys):
    root, inter = public_ca()
    cert, _ = broker_cert_from(inter)
    spec_path = spec_with_broker_files(tmp_path, "mtls", cert=cert, key=profiles.generate_key("ec-p256"),
                                       chain=[inter.cert], ca=root.cert)
    code, _, err = run_gen(capsys, "generate", spec_path)
    assert code == 2 and "broker-key.pem is not the key of the certificate" in err


# ---------------------------------------------------------------------------------------------- a broker gen does not run


def test_for_a_broker_you_do_not_run_gen_makes_firmware_and_identities_and_no_broker_config(tmp_path, capsys):
    root, _ = public_ca()
    spec_path = spec_with_broker_files(tmp_path, "mtls", ca=root.cert, extra="  external: true")
    spec = load_spec(spec_path)
    out = generate(spec, spec_path.parent / "build")
    broker_dir = out.out_dir / "broker"
    assert sorted(p.name for p in broker_dir.iterdir()) == ["README.md", "ca.pem", "crl.pem"]
    assert "you do not run" in (broker_dir / "README.md").read_text()
    assert (out.out_dir / "devices" / "sensor-a" / "ca.pem").read_bytes() == pem(root.cert)
    assert (out.out_dir / "devices" / "sensor-a" / "client.pem").is_file()
    assert not (spec_path.parent / "pki" / "broker.pem").exists()
    manifest = json.loads(out.manifest_path.read_text())
    assert manifest["broker"]["config"] is None and manifest["broker"]["external"] is True
    for command in (["broker", "config", spec_path], ["broker", "up", spec_path]):
        code, _, err = run_gen(capsys, *command)
        assert code == 2 and "broker gen does not run" in err
