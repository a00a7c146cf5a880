"""The PKI directory: created once, reused byte-identical, never silently replaced, secrets kept 0600."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from generator.pki import profiles

from generator.pki.ca import CRL_VALIDITY_DAYS
from generator.core.errors import UserError
from generator.pki.spec_identities import ensure_spec_identities
from generator.pki.store import PkiStore
from generator.spec import load_spec

BROKER = ["mqtt.example.com", "192.168.1.10"]


def build(directory: Path, **open_options) -> PkiStore:
    """Everything `gen generate` asks of the store for a small fleet."""
    store = PkiStore.open(directory, project="demo", **open_options)
    with store.batch():
        store.ensure_broker(BROKER, validity_days=365)
        store.ensure_devices(["esp32-0001", "esp32-0002"], key_type="ec-p256", validity_days=365)
        store.ensure_device("esp32-rsa", key_type="rsa-2048", validity_days=365)
        store.ensure_client("backend", key_type="ec-p256", validity_days=365)
        store.password("esp32-0002")
        store.password("backend")
        store.crl_pem()
    return store


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file with its bytes, mode and mtime (an unchanged mtime shows the file was not rewritten)."""
    return {str(p.relative_to(directory)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------------ reuse


def test_rerunning_leaves_every_pki_file_byte_identical_and_untouched(tmp_path):
    build(tmp_path / "pki")
    before = snapshot(tmp_path / "pki")
    build(tmp_path / "pki")
    assert snapshot(tmp_path / "pki") == before


def test_a_rerun_returns_the_same_identities_and_passwords(tmp_path):
    first = build(tmp_path / "pki")
    second = PkiStore.open(tmp_path / "pki", project="demo")
    assert second.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365) == \
        first.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    assert second.password("backend") == first.password("backend")
    assert second.device_trust_pem() == first.device_trust_pem()


def test_passwords_are_long_random_and_url_safe(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="demo")
    passwords = {store.password(f"user-{i}") for i in range(5)}
    assert len(passwords) == 5
    assert all(len(p) >= 32 and p.replace("-", "").replace("_", "").isalnum() for p in passwords)


def test_private_keys_and_passwords_are_0600_in_0700_dirs_and_certs_are_public(tmp_path):
    build(tmp_path / "pki")
    private = tmp_path / "pki" / "private"
    files = [p for p in private.rglob("*") if p.is_file()]
    assert len(files) >= 8  # root, issuing, broker, 3 devices, backend keys; 2 passwords
    assert all(mode(p) == 0o600 for p in files)
    assert all(mode(d) == 0o700 for d in [private, *(p for p in private.rglob("*") if p.is_dir())])
    assert mode(tmp_path / "pki" / "ca.pem") == 0o644
    assert mode(tmp_path / "pki" / "devices" / "esp32-0001.pem") == 0o644


def test_the_broker_file_carries_the_chain_and_the_cafile_holds_issuing_and_root(tmp_path):
    store = build(tmp_path / "pki")
    broker = store.ensure_broker(BROKER, validity_days=365)
    leaf, issuing = x509.load_pem_x509_certificates(broker.cert_pem)
    assert issuing == store.issuing_ca_cert
    assert x509.load_pem_x509_certificates(store.broker_cafile_pem()) == [store.issuing_ca_cert,
                                                                           store.root_ca_cert]
    assert leaf.subject.rfc4514_string() == "O=demo,CN=mqtt.example.com"


def test_the_index_records_every_cert_without_secrets(tmp_path):
    store = build(tmp_path / "pki")
    document = json.loads((tmp_path / "pki" / "index.json").read_text())
    roles = sorted(entry["role"] for entry in document["certs"])
    assert roles == ["broker", "client", "device", "device", "device", "issuing-ca", "root-ca"]
    text = (tmp_path / "pki" / "index.json").read_text()
    assert "PRIVATE KEY" not in text and store.password("backend") not in text
    assert {e.id for e in store.entries()} >= {"esp32-0001", "backend", "broker"}


def test_deleting_the_build_output_loses_nothing_because_nothing_lives_there(tmp_path):
    """gen generate writes the device keys into build/ (copies); rm -rf build/ and generate again: the PKI is
    untouched and every copy comes back byte for byte, the same key, not a new one."""
    from generator.output.generate import generate

    example = Path(__file__).parent.parent.parent / "projects" / "examples" / "fleet-nvs"
    shutil.copytree(example, tmp_path / "spec", ignore=shutil.ignore_patterns("pki", "build"))
    spec = load_spec(tmp_path / "spec" / "device.yaml")
    generate(spec)
    out = tmp_path / "spec" / "build"
    def secrets_in(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                if p.name in ("nvs.bin", "client.key", "client.pem", "ca.pem", "passwd")}

    pki_before, out_before = snapshot(tmp_path / "spec" / "pki"), secrets_in(out)
    assert any(path.endswith("nvs.bin") for path in out_before)   # the keys and passwords in build/
    shutil.rmtree(out)
    generate(load_spec(tmp_path / "spec" / "device.yaml"))
    assert snapshot(tmp_path / "spec" / "pki") == pki_before
    assert secrets_in(out) == out_before


def test_many_devices_are_issued_in_parallel_with_their_files_modes_and_one_index(tmp_path, monkeypatch):
    from generator.pki import issuing as pki_store_module
    from generator.pki import pool

    monkeypatch.setattr(pool, "NAMES_PER_WORKER_MIN", 20)   # workers from 40 names, not 1,000
    forked = []
    real_pool = pki_store_module.ProcessPoolExecutor
    monkeypatch.setattr(pki_store_module, "ProcessPoolExecutor",
                        lambda workers, **kwargs: forked.append(workers) or real_pool(workers, **kwargs))
    store = PkiStore.open(tmp_path / "pki", project="fleet")
    ids = [f"dev-{i:04d}" for i in range(100)]
    identities = store.ensure_devices(ids, key_type="ec-p256", validity_days=365)
    assert forked and forked[0] > 1, "the batch was not issued by worker processes"
    assert [i.name for i in identities] == ids
    assert len({i.serial for i in identities}) == 100
    assert all(mode(i.key_path) == 0o600 and i.cert_path.read_bytes() == i.cert_pem for i in identities[::97])
    reopened = PkiStore.open(tmp_path / "pki", project="fleet")
    assert reopened.ensure_devices(ids, key_type="ec-p256", validity_days=365) == identities
    assert len([e for e in reopened.entries() if e.role == "device"]) == 100


def test_a_small_batch_of_rsa_keys_is_made_by_worker_processes_on_every_core(tmp_path, monkeypatch):
    from generator.pki import issuing

    forked = []
    real_pool = issuing.ProcessPoolExecutor
    monkeypatch.setattr(issuing, "ProcessPoolExecutor",
                        lambda workers, **kwargs: forked.append(workers) or real_pool(workers, **kwargs))
    monkeypatch.setattr(issuing.os, "cpu_count", lambda: 2)
    store = PkiStore.open(tmp_path / "pki", project="fleet", key_type="rsa-2048")
    identities = store.ensure_devices([f"rsa-{i}" for i in range(6)], key_type="rsa-2048", validity_days=365)
    assert forked and forked[0] >= 2, "six RSA keys were made in one process"
    assert len({i.serial for i in identities}) == 6


def test_files_left_by_a_run_interrupted_before_its_index_write_are_adopted(tmp_path):
    store = build(tmp_path / "pki")
    device = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    index = tmp_path / "pki" / "index.json"
    document = json.loads(index.read_text())
    document["certs"] = [e for e in document["certs"] if e["id"] != "esp32-0001"]
    index.write_text(json.dumps(document))
    again = PkiStore.open(tmp_path / "pki", project="demo").ensure_device("esp32-0001", key_type="ec-p256",
                                                                          validity_days=365)
    assert again == device


# ------------------------------------------------------------------------------------------------ the CA


def test_a_corrupted_ca_file_is_an_error_and_is_never_regenerated(tmp_path):
    build(tmp_path / "pki")
    (tmp_path / "pki" / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    with pytest.raises(UserError, match="ca.pem is not a readable PEM certificate"):
        PkiStore.open(tmp_path / "pki", project="demo")
    assert b"garbage" in (tmp_path / "pki" / "ca.pem").read_bytes()


def test_a_foreign_ca_file_is_an_error(tmp_path):
    build(tmp_path / "pki")
    other = PkiStore.open(tmp_path / "other", project="demo")
    (tmp_path / "pki" / "ca.pem").write_bytes(other.device_trust_pem())
    with pytest.raises(UserError, match="not the root CA this PKI was created with"):
        PkiStore.open(tmp_path / "pki", project="demo")


def test_a_foreign_issuing_ca_is_an_error(tmp_path):
    build(tmp_path / "pki")
    other = PkiStore.open(tmp_path / "other", project="demo")
    (tmp_path / "pki" / "issuing-ca.pem").write_bytes((tmp_path / "other" / "issuing-ca.pem").read_bytes())
    with pytest.raises(UserError, match="issuing CA"):
        PkiStore.open(tmp_path / "pki", project="demo")
    del other


def test_a_deleted_ca_file_in_a_used_pki_is_an_error_not_a_new_ca(tmp_path):
    build(tmp_path / "pki")
    (tmp_path / "pki" / "ca.pem").unlink()
    with pytest.raises(UserError, match="ca.pem is missing"):
        PkiStore.open(tmp_path / "pki", project="demo")
    assert not (tmp_path / "pki" / "ca.pem").exists()


def test_opening_without_create_does_not_make_a_pki(tmp_path):
    with pytest.raises(UserError, match="no PKI"):
        PkiStore.open(tmp_path / "pki", project="demo", create=False)
    assert not (tmp_path / "pki").exists()


def test_the_ca_profile_is_what_mbedtls_and_openssl_require(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="demo")
    for cert in (store.root_ca_cert, store.issuing_ca_cert):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert constraints.critical and constraints.value.ca
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    store.issuing_ca_cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert 0 < store.root_ca_cert.serial_number < 2 ** 159


# ------------------------------------------------------------------------------------------------ passphrase


def test_with_a_passphrase_no_ca_key_is_stored_in_the_clear(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"correct horse")
    private = tmp_path / "pki" / "private"
    assert sorted(p.name for p in private.iterdir()) == ["ca-key.p12", "issuing-ca-key.p12"]
    for name, cert in (("ca-key.p12", store.root_ca_cert), ("issuing-ca-key.p12", store.issuing_ca_cert)):
        key = pkcs12.load_key_and_certificates((private / name).read_bytes(), b"correct horse")[0]
        assert key.public_key() == cert.public_key()
        assert b"PRIVATE KEY" not in (private / name).read_bytes()
    with pytest.raises(UserError, match="wrong passphrase"):
        PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"wrong")


def test_issuing_with_an_encrypted_issuing_key_needs_the_passphrase_and_reusing_does_not(tmp_path):
    build(tmp_path / "pki", passphrase=b"correct horse")
    store = PkiStore.open(tmp_path / "pki", project="demo")                     # no passphrase at all
    store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)    # reused: nothing to sign
    store.crl_pem()                                                             # fresh: nothing to sign
    with pytest.raises(UserError, match="issue 1 new device certificate .esp32-0003.* is encrypted"):
        store.ensure_device("esp32-0003", key_type="ec-p256", validity_days=365)
    with_passphrase = PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"correct horse")
    device = with_passphrase.ensure_device("esp32-0003", key_type="ec-p256", validity_days=365)
    x509.load_pem_x509_certificate(device.cert_pem).verify_directly_issued_by(store.issuing_ca_cert)


def test_issuing_works_with_the_root_key_offline(tmp_path):
    PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"correct horse")
    (tmp_path / "pki" / "private" / "ca-key.p12").unlink()  # moved to offline storage
    store = PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"correct horse")
    device = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=30)
    x509.load_pem_x509_certificate(device.cert_pem).verify_directly_issued_by(store.issuing_ca_cert)


def test_a_passphrase_given_later_encrypts_both_clear_ca_keys_and_keeps_them(tmp_path):
    store = build(tmp_path / "pki")
    private = tmp_path / "pki" / "private"
    root_public = store.root_ca_cert.public_key()
    PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"late")
    assert not (private / "ca-key.pem").exists() and not (private / "issuing-ca-key.pem").exists()
    root_key = pkcs12.load_key_and_certificates((private / "ca-key.p12").read_bytes(), b"late")[0]
    issuing_key = pkcs12.load_key_and_certificates((private / "issuing-ca-key.p12").read_bytes(), b"late")[0]
    assert root_key.public_key() == root_public                                 # the same keys, not new ones
    assert issuing_key.public_key() == store.issuing_ca_cert.public_key()
    with pytest.raises(UserError, match="wrong passphrase"):
        PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"other")


def test_a_swapped_clear_root_key_is_an_error_on_open(tmp_path):
    build(tmp_path / "pki")
    (tmp_path / "pki" / "private" / "ca-key.pem").write_bytes(profiles.private_key_pem(profiles.generate_key("ec-p256")))
    with pytest.raises(UserError, match="ca-key.pem .root CA key. does not belong to"):
        PkiStore.open(tmp_path / "pki", project="demo")


def test_a_swapped_encrypted_ca_key_is_an_error_on_open_even_without_the_passphrase(tmp_path):
    build(tmp_path / "pki", passphrase=b"correct horse")
    other = tmp_path / "other"
    PkiStore.open(other, project="demo", passphrase=b"correct horse")
    (tmp_path / "pki" / "private" / "issuing-ca-key.p12").write_bytes(
        (other / "private" / "issuing-ca-key.p12").read_bytes())
    with pytest.raises(UserError, match="is not the encrypted issuing CA key this PKI recorded"):
        PkiStore.open(tmp_path / "pki", project="demo")
    with pytest.raises(UserError, match="does not belong to the CA certificate"):
        PkiStore.open(tmp_path / "pki", project="demo", passphrase=b"correct horse")


def test_an_index_of_another_project_is_refused(tmp_path):
    build(tmp_path / "pki")
    with pytest.raises(UserError, match="belongs to project 'demo', not to 'greenhouse'"):
        PkiStore.open(tmp_path / "pki", project="greenhouse")


# ------------------------------------------------------------------------------------------------ bad inputs


def test_an_unreadable_device_key_is_a_clear_error(tmp_path):
    build(tmp_path / "pki")
    (tmp_path / "pki" / "private" / "devices" / "esp32-0001-key.pem").write_bytes(b"not a key")
    store = PkiStore.open(tmp_path / "pki", project="demo")
    with pytest.raises(UserError, match="esp32-0001-key.pem is not a readable private key") as error:
        store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    assert "--new-key" in error.value.hint


def test_a_device_id_that_is_not_a_safe_name_is_refused(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="demo")
    for bad in ("../escape", "dev+wild", "a/b", "", "x" * 65):
        with pytest.raises(UserError, match="cannot be used as a certificate name"):
            store.ensure_device(bad, key_type="ec-p256", validity_days=1)


def test_a_bad_broker_name_is_refused_before_anything_is_written(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="demo")
    with pytest.raises(UserError, match="neither an IP address nor a DNS name"):
        store.ensure_broker(["mqtt.example.com", "bad name!"], validity_days=1)
    assert not (tmp_path / "pki" / "broker.pem").exists()


def test_asking_for_another_key_type_needs_an_explicit_new_key(tmp_path):
    store = build(tmp_path / "pki")
    with pytest.raises(UserError, match="has a ec-p256 key, but rsa-2048 is asked for") as error:
        store.ensure_device("esp32-0001", key_type="rsa-2048", validity_days=365)
    assert "renew" in error.value.hint
    renewed = store.renew("esp32-0001", new_key=True, key_type="rsa-2048")
    assert store.ensure_device("esp32-0001", key_type="rsa-2048", validity_days=365) == renewed


# ------------------------------------------------------------------------------------------------ revoke, renew


def test_revoking_twice_is_a_clear_error(tmp_path):
    store = build(tmp_path / "pki")
    store.revoke("esp32-0001")
    with pytest.raises(UserError, match="already revoked: no certificate of it is left to revoke"):
        store.revoke("esp32-0001")


def test_revoking_an_identity_revokes_its_earlier_unexpired_certificates_too(tmp_path):
    store = build(tmp_path / "pki")
    first = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    second = store.renew("esp32-0001", new_key=False)
    third = store.renew("esp32-0001", new_key=True)
    revoked = store.revoke("esp32-0001", reason="key-compromise")
    assert sorted(e.serial for e in revoked) == sorted([first.serial, second.serial, third.serial])
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / "crl.pem").read_bytes())
    for identity in (first, second, third):
        assert crl.get_revoked_certificate_by_serial_number(identity.serial) is not None
    other = store.ensure_device("esp32-0002", key_type="ec-p256", validity_days=365)
    assert crl.get_revoked_certificate_by_serial_number(other.serial) is None


def test_revoking_a_key_revokes_every_certificate_of_that_key_and_nothing_else(tmp_path):
    store = build(tmp_path / "pki")
    first = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    second = store.renew("esp32-0001", new_key=False)                 # same key
    leaked = profiles.load_private_key_pem(first.key_pem, "key")
    third = store.renew("esp32-0001", new_key=True)                   # a new key: not revoked with the old one
    revoked = store.revoke_key(leaked.public_key(), reason="key-compromise")
    assert sorted(e.serial for e in revoked) == sorted([first.serial, second.serial])
    assert store.entry("esp32-0001").status == "valid" and store.entry("esp32-0001").serial == third.serial
    with pytest.raises(UserError, match="no unrevoked, unexpired certificate of this PKI certifies that key"):
        store.revoke_key(leaked)


def test_a_revoked_key_is_never_certified_again(tmp_path):
    store = build(tmp_path / "pki")
    device = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    store.revoke_key(profiles.load_private_key_pem(device.key_pem, "key"))
    with pytest.raises(UserError, match="key must not be certified again"):
        store.renew("esp32-0001", new_key=False)


def test_the_history_lists_every_certificate_of_each_identity_oldest_first(tmp_path):
    store = build(tmp_path / "pki")
    first = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    second = store.renew("esp32-0001", new_key=False)
    history = {name: entries for role, name, entries in store.history()}
    assert [(e.serial, e.status) for e in history["esp32-0001"]] == [(first.serial, "superseded"),
                                                                     (second.serial, "valid")]
    assert history["esp32-0001"][0].key_sha256 == history["esp32-0001"][1].key_sha256


def test_revoking_an_unknown_identity_is_a_clear_error(tmp_path):
    store = build(tmp_path / "pki")
    with pytest.raises(UserError, match="no certificate named 'esp32-9999'"):
        store.revoke("esp32-9999")


def test_revoking_puts_the_serial_on_a_freshly_signed_crl(tmp_path):
    store = build(tmp_path / "pki")
    serial = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365).serial
    before = x509.load_pem_x509_crl(store.crl_pem())
    store.revoke("esp32-0001", reason="key-compromise")
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert crl.is_signature_valid(store.issuing_ca_cert.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > \
        before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert store.entry("esp32-0001").status == "revoked"


def test_a_revoked_device_still_in_the_spec_is_reported_not_silently_reissued(tmp_path):
    store = build(tmp_path / "pki")
    store.revoke("esp32-0001")
    with pytest.raises(UserError, match="is revoked") as error:
        store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    assert "renew" in error.value.hint
    with pytest.raises(UserError, match="key must not be certified again"):
        store.renew("esp32-0001", new_key=False)
    fresh = store.renew("esp32-0001", new_key=True)
    assert store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365) == fresh


def test_renewing_with_the_same_key_issues_a_new_cert_for_that_key(tmp_path):
    store = build(tmp_path / "pki")
    old = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    new = store.renew("esp32-0001", new_key=False)
    assert new.key_pem == old.key_pem and new.serial != old.serial
    assert [e.status for e in store.entries() if e.id == "esp32-0001"] == ["superseded", "valid"]


def test_renewing_with_a_new_key_replaces_the_key(tmp_path):
    store = build(tmp_path / "pki")
    old = store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    new = store.renew("esp32-0001", new_key=True)
    assert new.key_pem != old.key_pem and new.key_path.read_bytes() == new.key_pem
    assert mode(new.key_path) == 0o600


def test_changing_the_broker_names_reissues_its_cert_with_the_same_key_and_keeps_the_ca(tmp_path):
    store = build(tmp_path / "pki")
    ca = store.device_trust_pem()
    old = store.ensure_broker(BROKER, validity_days=365)
    new = store.ensure_broker(["mqtt.example.com", "10.0.0.5"], validity_days=365)
    assert new.serial != old.serial and new.key_pem == old.key_pem
    san = x509.load_pem_x509_certificate(new.cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert x509.DNSName("10.0.0.5") in san and x509.DNSName("192.168.1.10") not in san
    assert PkiStore.open(tmp_path / "pki", project="demo").device_trust_pem() == ca
    assert store.ensure_broker(["mqtt.example.com", "10.0.0.5"], validity_days=365) == new


# ------------------------------------------------------------------------------------------------ CRL


def test_the_crl_is_resigned_only_once_half_its_lifetime_has_passed(tmp_path):
    store = build(tmp_path / "pki")
    first = store.crl_pem()
    now = dt.datetime.now(dt.timezone.utc)
    store.clock = lambda: now + dt.timedelta(days=CRL_VALIDITY_DAYS * 0.4)
    assert store.crl_pem() == first
    store.clock = lambda: now + dt.timedelta(days=CRL_VALIDITY_DAYS * 0.6)
    second = store.crl_pem()
    assert second != first
    crl = x509.load_pem_x509_crl(second)
    assert crl.next_update_utc > now + dt.timedelta(days=CRL_VALIDITY_DAYS)


def test_a_damaged_crl_is_rebuilt_from_the_index(tmp_path):
    store = build(tmp_path / "pki")
    serial = store.ensure_device("esp32-0002", key_type="ec-p256", validity_days=365).serial
    store.revoke("esp32-0002")
    (tmp_path / "pki" / "crl.pem").write_bytes(b"junk")
    crl = x509.load_pem_x509_crl(store.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


# ------------------------------------------------------------------------------------------------ the spec


SPEC = """\
project: spec-pki
target: esp32-arduino
wifi:
  ssid: test-wifi
  password: test-passphrase
broker:
  host: mqtt.example.com
  names: [mqtt.example.com, 127.0.0.1]
  port: 8883
auth: mtls+password
pki:
  ca_passphrase_env: TEST_PKI_PASSPHRASE
status:
  topic: devices/{id}/status
publish:
  - name: telemetry
    topic: devices/{id}/telemetry
    interval: 10
devices:
  - id: sensor-a
  - id: sensor-b
"""


def test_the_spec_gets_its_broker_devices_backend_and_passwords_and_a_rerun_changes_nothing(tmp_path, monkeypatch):
    (tmp_path / "device.yaml").write_text(SPEC)
    monkeypatch.setenv("TEST_PKI_PASSPHRASE", "spec passphrase")
    spec = load_spec(tmp_path / "device.yaml")
    identities = ensure_spec_identities(spec)
    assert list(identities.devices) == ["sensor-a", "sensor-b"]
    assert sorted(identities.passwords) == ["backend", "gen.admin", "gen.doctor", "sensor-a", "sensor-b"]
    assert identities.broker.cert_path == tmp_path / "pki" / "broker.pem"
    assert (tmp_path / "pki" / "private" / "ca-key.p12").exists()
    before = snapshot(tmp_path / "pki")
    monkeypatch.delenv("TEST_PKI_PASSPHRASE")  # everyday generate: no passphrase needed
    assert ensure_spec_identities(spec) == identities
    assert snapshot(tmp_path / "pki") == before


def test_a_spec_that_protects_a_new_ca_with_an_unset_variable_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "device.yaml").write_text(SPEC)
    monkeypatch.delenv("TEST_PKI_PASSPHRASE", raising=False)
    with pytest.raises(UserError, match="TEST_PKI_PASSPHRASE is not set"):
        ensure_spec_identities(load_spec(tmp_path / "device.yaml"))
    assert not (tmp_path / "pki" / "ca.pem").exists()


def test_everyday_generate_reads_no_passphrase_until_it_must_sign_and_then_says_why(tmp_path, monkeypatch, caplog):
    (tmp_path / "device.yaml").write_text(SPEC)
    monkeypatch.setenv("TEST_PKI_PASSPHRASE", "right")
    first = ensure_spec_identities(load_spec(tmp_path / "device.yaml"))
    private = tmp_path / "pki" / "private"
    assert not (private / "ca-key.pem").exists() and not (private / "issuing-ca-key.pem").exists()
    monkeypatch.setenv("TEST_PKI_PASSPHRASE", "wrong")          # never read: nothing needs signing
    caplog.clear()
    with caplog.at_level("INFO", logger="generator.pki.store"):
        assert ensure_spec_identities(load_spec(tmp_path / "device.yaml")) == first
    assert "passphrase" not in caplog.text
    (tmp_path / "device.yaml").write_text(SPEC.replace("  - id: sensor-b\n", "  - id: sensor-b\n  - id: sensor-c\n"))
    with pytest.raises(UserError, match="wrong passphrase .*TEST_PKI_PASSPHRASE"):
        ensure_spec_identities(load_spec(tmp_path / "device.yaml"))
    monkeypatch.delenv("TEST_PKI_PASSPHRASE")
    with pytest.raises(UserError, match="must issue 1 new device certificate .sensor-c.* TEST_PKI_PASSPHRASE is not "
                                        "set"):
        ensure_spec_identities(load_spec(tmp_path / "device.yaml"))
    monkeypatch.setenv("TEST_PKI_PASSPHRASE", "right")
    with caplog.at_level("INFO", logger="generator.pki.store"):
        assert "sensor-c" in ensure_spec_identities(load_spec(tmp_path / "device.yaml")).devices
    assert "reading their passphrase from $TEST_PKI_PASSPHRASE to issue 1 new device certificate (sensor-c)" in \
        caplog.text


def test_a_due_crl_is_the_one_everyday_signature_and_asks_for_the_passphrase(tmp_path, monkeypatch):
    (tmp_path / "device.yaml").write_text(SPEC)
    monkeypatch.setenv("TEST_PKI_PASSPHRASE", "right")
    ensure_spec_identities(load_spec(tmp_path / "device.yaml"))
    monkeypatch.delenv("TEST_PKI_PASSPHRASE")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=16)
    with pytest.raises(UserError, match=r"must re-sign the CRL \(it is due"):
        ensure_spec_identities(load_spec(tmp_path / "device.yaml"), clock=lambda: later)


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_under_any_umask_every_pki_folder_has_its_own_mode_and_nothing_is_writable_by_others(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = build(tmp_path / "projects" / "demo" / "pki")
        store.renew("esp32-0001", new_key=True)
    finally:
        os.umask(old)
    root = tmp_path / "projects" / "demo" / "pki"
    folders = {str(d.relative_to(root)): mode(d) for d in [root, *root.rglob("*")] if d.is_dir()}
    assert folders == {".": 0o755, "devices": 0o755, "clients": 0o755, "private": 0o700,
                       "private/devices": 0o700, "private/clients": 0o700, "private/passwords": 0o700}
    assert mode(tmp_path / "projects") == 0o755 and mode(tmp_path / "projects" / "demo") == 0o755
    for path in root.rglob("*"):
        assert not mode(path) & 0o022, f"{path} is writable by group or others"
        if "private" in path.parts or path.name == ".lock":
            assert not mode(path) & 0o077, f"{path} is readable by group or others"


def test_opening_a_pki_made_under_a_loose_umask_tightens_its_folders(tmp_path):
    build(tmp_path / "pki")
    for directory in (tmp_path / "pki", tmp_path / "pki" / "devices", tmp_path / "pki" / "private"):
        os.chmod(directory, 0o777)
    PkiStore.open(tmp_path / "pki", project="demo")
    assert [mode(tmp_path / "pki" / d) for d in (".", "devices", "private")] == [0o755, 0o755, 0o700]


def test_umask_does_not_loosen_or_tighten_file_modes(tmp_path):
    old = os.umask(0o077)
    try:
        build(tmp_path / "pki")
    finally:
        os.umask(old)
    assert mode(tmp_path / "pki" / "ca.pem") == 0o644
    assert mode(tmp_path / "pki" / "private" / "issuing-ca-key.pem") == 0o600


def test_bulk_index_subjects_are_the_certs_own_subjects(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="Fleet, Inc. #1")
    ids = [f"dev-{i:04d}" for i in range(3)]
    for identity in store.ensure_devices(ids, key_type="ec-p256", validity_days=30):
        cert = x509.load_pem_x509_certificate(identity.cert_pem)
        assert store.entry(identity.name).subject == cert.subject.rfc4514_string()


def test_the_cas_cannot_be_revoked_or_renewed_like_a_leaf(tmp_path):
    store = build(tmp_path / "pki")
    for ca in ("root-ca", "issuing-ca"):
        with pytest.raises(UserError, match="not on the"):
            store.revoke(ca)
        with pytest.raises(UserError, match="not on the"):
            store.renew(ca, new_key=True)
    assert PkiStore.open(tmp_path / "pki", project="demo").device_trust_pem() == store.device_trust_pem()


def test_a_key_file_swapped_for_another_valid_key_is_an_error_not_a_silent_reissue(tmp_path):
    store = build(tmp_path / "pki")
    keys = tmp_path / "pki" / "private" / "devices"
    (keys / "esp32-0001-key.pem").write_bytes((keys / "esp32-0002-key.pem").read_bytes())
    cert_before = (tmp_path / "pki" / "devices" / "esp32-0001.pem").read_bytes()
    with pytest.raises(UserError, match="does not belong to"):
        store.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    with pytest.raises(UserError, match="does not belong to"):
        store.renew("esp32-0001", new_key=False)
    assert (tmp_path / "pki" / "devices" / "esp32-0001.pem").read_bytes() == cert_before


def test_rsa_identities_are_reused_like_ec_ones(tmp_path):
    store = build(tmp_path / "pki")
    first = store.ensure_device("esp32-rsa", key_type="rsa-2048", validity_days=365)
    assert PkiStore.open(tmp_path / "pki", project="demo").ensure_device(
        "esp32-rsa", key_type="rsa-2048", validity_days=365) == first


def _open_and_issue(directory: str, device_id: str) -> bytes:
    store = PkiStore.open(Path(directory), project="race")
    store.ensure_device(device_id, key_type="ec-p256", validity_days=30)
    return store.device_trust_pem()


def test_concurrent_runs_create_one_ca_and_lose_no_index_entry(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:
        trusts = pool.starmap(_open_and_issue, [(str(tmp_path / "pki"), f"dev-{i}") for i in range(8)])
    assert len(set(trusts)) == 1
    store = PkiStore.open(tmp_path / "pki", project="race")
    assert sorted(e.id for e in store.entries() if e.role == "device") == [f"dev-{i}" for i in range(8)]
