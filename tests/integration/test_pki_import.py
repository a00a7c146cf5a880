"""Bring your own CA: `gen pki import` starts the project's PKI from an existing CA (a corporate intermediate with
its chain, or a team's self-signed CA). The broker and devices it issues work with the real Mosquitto, OpenSSL and
mbedTLS 2.28; revocation works; what cannot be a CA is refused before anything is written."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import (build_broker_project, client_tls_context, mbedtls_connect, mqtt_connect_over,
                      tls_connect, two_device_spec)
from generator.pki import profiles
from generator.cli import main
from generator.pki.store import PkiStore


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def corporate_ca() -> tuple[profiles.CertificateAuthority, profiles.CertificateAuthority]:
    """An organisation's root and the intermediate it lets the project issue from."""
    root_key, issuing_key = profiles.generate_key("ec-p256"), profiles.generate_key("ec-p256")
    root = profiles.CertificateAuthority(profiles.build_root_ca(root_key, project="Example Corp", validity_days=3650,
                                                      now=now()), root_key)
    issuing = profiles.CertificateAuthority(profiles.build_issuing_ca(issuing_key, root=root, project="Example Corp IoT",
                                                            validity_days=1000, now=now()), issuing_key)
    return root, issuing


def run_gen(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "device.yaml"
    path.write_text(two_device_spec("mtls"))
    return path


@pytest.mark.parametrize("kind", ["intermediate with its chain", "self-signed team CA"])
def test_an_imported_ca_issues_a_broker_and_devices_that_the_real_broker_and_both_tls_stacks_accept(
        kind, spec, tmp_path, capsys, start_broker):
    root, issuing = corporate_ca()
    ca = issuing if kind.startswith("intermediate") else root
    (tmp_path / "ca.pem").write_bytes(pem(ca.cert))
    (tmp_path / "ca.key").write_bytes(profiles.private_key_pem(ca.key))
    args = ["pki", "import", spec, "--cert", tmp_path / "ca.pem", "--key", tmp_path / "ca.key"]
    if ca is issuing:
        (tmp_path / "chain.pem").write_bytes(pem(root.cert))
        args += ["--chain", tmp_path / "chain.pem"]
    code, out, err = run_gen(capsys, *args)
    assert code == 0, err
    assert (spec.parent / "pki" / "ca.pem").read_bytes() == pem(root.cert)     # devices trust the organisation's root
    assert not (spec.parent / "pki" / "private" / "ca-key.pem").exists()       # the root's key is not ours

    project = build_broker_project(spec)
    broker = start_broker(project.broker_dir)
    device = project.client("sensor-a")
    with tls_connect(broker, client_tls_context(device)) as sock:
        assert mqtt_connect_over(sock, device) == 0
    mbed = mbedtls_connect(broker, device)
    try:
        assert mqtt_connect_over(mbed, device) == 0
    finally:
        mbed.close()

    PkiStore.open(spec.parent / "pki", project="broker-test").revoke("sensor-b")   # the CRL is the imported CA's
    spec.write_text(spec.read_text().replace("  - id: sensor-b\n", ""))
    broker.install(build_broker_project(spec).broker_dir)
    broker.reload()
    with pytest.raises(ssl.SSLError) as refused:
        tls_connect(broker, client_tls_context(project.client("sensor-b"))).close()
    assert "CERTIFICATE_REVOKED" in str(refused.value).upper()


def test_importing_a_cert_that_is_not_a_ca_is_refused_and_writes_nothing(spec, tmp_path, capsys):
    root, issuing = corporate_ca()
    leaf_key = profiles.generate_key("ec-p256")
    leaf = profiles.issue_device_cert(leaf_key.public_key(), "not-a-ca", issuer=issuing, validity_days=30, now=now(),
                                 project="x")
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    (tmp_path / "leaf.key").write_bytes(profiles.private_key_pem(leaf_key))
    code, _, err = run_gen(capsys, "pki", "import", spec, "--cert", tmp_path / "leaf.pem", "--key",
                           tmp_path / "leaf.key")
    assert code == 2 and "is not a CA certificate" in err
    assert not (spec.parent / "pki" / "ca.pem").exists()


def test_importing_with_a_key_that_is_not_the_cas_is_refused(spec, tmp_path, capsys):
    root, _ = corporate_ca()
    (tmp_path / "ca.pem").write_bytes(pem(root.cert))
    (tmp_path / "other.key").write_bytes(profiles.private_key_pem(profiles.generate_key("ec-p256")))
    code, _, err = run_gen(capsys, "pki", "import", spec, "--cert", tmp_path / "ca.pem", "--key", tmp_path / "other.key")
    assert code == 2 and "the key does not belong to it" in err


def test_an_intermediate_without_its_chain_is_refused(spec, tmp_path, capsys):
    _, issuing = corporate_ca()
    (tmp_path / "ca.pem").write_bytes(pem(issuing.cert))
    (tmp_path / "ca.key").write_bytes(profiles.private_key_pem(issuing.key))
    code, _, err = run_gen(capsys, "pki", "import", spec, "--cert", tmp_path / "ca.pem", "--key", tmp_path / "ca.key")
    assert code == 2 and "no --chain up to its root" in err


def test_importing_over_an_existing_pki_is_refused_and_keeps_it(spec, tmp_path, capsys):
    assert run_gen(capsys, "pki", "init", spec)[0] == 0
    existing = (spec.parent / "pki" / "ca.pem").read_bytes()
    root, _ = corporate_ca()
    (tmp_path / "ca.pem").write_bytes(pem(root.cert))
    (tmp_path / "ca.key").write_bytes(profiles.private_key_pem(root.key))
    code, _, err = run_gen(capsys, "pki", "import", spec, "--cert", tmp_path / "ca.pem", "--key", tmp_path / "ca.key")
    assert code == 2 and "already holds a PKI" in err
    assert (spec.parent / "pki" / "ca.pem").read_bytes() == existing


def test_an_imported_ca_key_is_stored_encrypted_when_the_spec_names_a_passphrase(spec, tmp_path, capsys, monkeypatch):
    spec.write_text(spec.read_text().replace("devices:\n", "pki:\n  ca_passphrase_env: CORP_PASS\ndevices:\n"))
    monkeypatch.setenv("CORP_PASS", "corporate secret")
    root, _ = corporate_ca()
    (tmp_path / "ca.pem").write_bytes(pem(root.cert))
    encrypted = root.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"corporate secret"))
    (tmp_path / "ca.key").write_bytes(encrypted)
    code, _, err = run_gen(capsys, "pki", "import", spec, "--cert", tmp_path / "ca.pem", "--key", tmp_path / "ca.key")
    assert code == 0, err
    private = spec.parent / "pki" / "private"
    assert sorted(p.name for p in private.iterdir()) == ["issuing-ca-key.p12"]
