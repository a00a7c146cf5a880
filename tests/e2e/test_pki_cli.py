"""`gen pki ...` and `gen inspect` as a user runs them: exit codes 0 / 2, no tracebacks, passwords printed only
by `gen pki show --secrets`. Most tests call `generator.cli.main` in-process (fast); the `python -m generator`
tests prove the same through the real entry point."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from generator.pki import profiles
from generator.cli import main
from generator.pki.store import PkiStore
from generator.core.paths import PROJECT_ROOT

TUTORIAL = Path(__file__).parent.parent / "data" / "tutorial"

SPEC = """\
project: cli-pki
target: esp32-arduino
wifi:
  ssid: test-wifi
  password: test-passphrase
broker:
  host: mqtt.example.com
  names: [mqtt.example.com, 192.168.1.10]
  port: 8883
auth: mtls+password
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


def gen_process(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "generator", *map(str, args)], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, timeout=120)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


@pytest.fixture
def gen(capsys, monkeypatch):
    """`gen(*args, env=...)` runs the CLI in this process and returns (returncode, stdout, stderr)."""

    def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["gen", *map(str, args)], code, out, err)

    return run


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def issued(spec, gen) -> Path:
    assert gen("pki", "issue", spec).returncode == 0
    return spec


def test_init_creates_the_ca_once_and_a_second_init_keeps_it(spec, gen):
    first = gen("pki", "init", spec)
    assert first.returncode == 0 and "created the PKI" in first.stdout
    ca = (spec.parent / "pki" / "ca.pem").read_bytes()
    second = gen("pki", "init", spec)
    assert second.returncode == 0 and "already exists" in second.stdout
    assert (spec.parent / "pki" / "ca.pem").read_bytes() == ca


def test_issue_then_list_shows_every_identity_with_days_left(issued, gen):
    listing = gen("pki", "list", issued)
    assert listing.returncode == 0
    for name in ("root-ca", "issuing-ca", "broker", "sensor-a", "sensor-b", "backend"):
        assert name in listing.stdout
    assert "824" in listing.stdout  # the default 825-day validity, minus the start-time skew


def test_list_warns_about_certs_within_30_days_of_expiry(tmp_path, gen):
    spec = tmp_path / "device.yaml"
    spec.write_text(SPEC.replace("devices:\n", "pki:\n  validity_days: 20\ndevices:\n"))
    assert gen("pki", "issue", spec).returncode == 0
    listing = gen("pki", "list", spec)
    assert listing.returncode == 0
    assert "warning:" in listing.stdout and "sensor-a expires in 19 days" in listing.stdout


def test_issue_twice_reuses_everything(issued, gen):
    again = gen("pki", "issue", issued)
    assert again.returncode == 0
    assert "issued" not in again.stdout.replace("PKI", "") and again.stdout.count("reused") == 5


def test_passwords_are_printed_only_by_show_with_secrets(issued, gen):
    password = (issued.parent / "pki" / "private" / "passwords" / "sensor-a.txt").read_text().strip()
    outputs = [gen("pki", "issue", issued), gen("pki", "list", issued), gen("pki", "show", issued, "sensor-a")]
    assert all(password not in r.stdout + r.stderr for r in outputs)
    shown = gen("pki", "show", issued, "sensor-a", "--secrets")
    assert shown.returncode == 0 and password in shown.stdout
    assert "chains to project CA" in shown.stdout and "urn:dev:sensor-a" in shown.stdout


def test_revoking_twice_exits_2_with_a_clear_message(issued, gen):
    assert gen("pki", "revoke", issued, "sensor-a").returncode == 0
    again = gen("pki", "revoke", issued, "sensor-a")
    assert again.returncode == 2
    assert "already revoked" in again.stderr and "fix:" in again.stderr


def test_revoke_names_the_command_that_ends_the_revoked_devices_live_session(issued, gen):
    revoked = gen("pki", "revoke", issued, "sensor-a")
    text = " ".join(revoked.stdout.split())
    assert f"gen broker apply {issued}" in text and "--reload-command 'systemctl reload mosquitto'" in text
    assert "SIGHUP" not in text                       # a reload alone leaves a live TLS session connected


def test_revoke_after_renew_revokes_both_certificates_and_list_shows_the_history(issued, gen):
    from cryptography import x509

    old_serial = x509.load_pem_x509_certificate((issued.parent / "pki" / "devices" / "sensor-a.pem").read_bytes()
                                                ).serial_number
    assert gen("pki", "renew", issued, "sensor-a").returncode == 0
    revoked = gen("pki", "revoke", issued, "sensor-a", "--reason", "key-compromise")
    assert revoked.returncode == 0 and revoked.stdout.count("revoked device sensor-a serial") == 2
    assert f"{old_serial:X}" in revoked.stdout
    listing = gen("pki", "list", issued).stdout
    lines = [line for line in listing.splitlines() if f"{old_serial:X}"[:12] in line]
    assert len(lines) == 1 and "revoked (key-compromise)" in lines[0]
    assert listing.count("revoked (key-compromise)") == 2
    current = gen("pki", "list", issued, "--current").stdout
    assert f"{old_serial:X}"[:12] not in current and current.count("revoked") == 1


def test_revoke_by_key_revokes_what_that_key_certifies(issued, gen):
    key = issued.parent / "pki" / "private" / "devices" / "sensor-b-key.pem"
    result = gen("pki", "revoke", issued, "--key", key)
    assert result.returncode == 0 and "revoked device sensor-b serial" in result.stdout
    assert "sensor-a" not in result.stdout
    assert gen("pki", "revoke", issued).returncode == 2          # neither an identity nor --key


def test_revoking_an_unknown_id_exits_2(issued, gen):
    result = gen("pki", "revoke", issued, "sensor-z")
    assert result.returncode == 2 and "no certificate named 'sensor-z'" in result.stderr


def test_renew_with_and_without_a_new_key(issued, gen):
    key = issued.parent / "pki" / "private" / "devices" / "sensor-b-key.pem"
    before = key.read_bytes()
    same = gen("pki", "renew", issued, "sensor-b")
    assert same.returncode == 0 and "same key" in same.stdout and key.read_bytes() == before
    new = gen("pki", "renew", issued, "sensor-b", "--new-key")
    assert new.returncode == 0 and "new key" in new.stdout and key.read_bytes() != before


def test_a_wrong_passphrase_exits_2(tmp_path, gen):
    spec = tmp_path / "device.yaml"
    spec.write_text(SPEC.replace("devices:\n", "pki:\n  ca_passphrase_env: CLI_TEST_CA_PASS\ndevices:\n"))
    assert gen("pki", "init", spec, env={"CLI_TEST_CA_PASS": "right"}).returncode == 0
    wrong = gen_process("pki", "issue", spec, env={"CLI_TEST_CA_PASS": "wrong"})
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr


def test_list_without_a_pki_exits_2_and_creates_nothing(spec, gen):
    result = gen("pki", "list", spec)
    assert result.returncode == 2 and "gen pki init" in result.stderr
    assert not (spec.parent / "pki").exists()


def test_a_corrupted_ca_exits_2_and_is_left_alone(issued, gen):
    ca = issued.parent / "pki" / "ca.pem"
    ca.write_text("corrupted")
    result = gen("pki", "issue", issued)
    assert result.returncode == 2 and "ca.pem" in result.stderr
    assert ca.read_text() == "corrupted"


def test_an_unreadable_key_exits_2(issued, gen):
    (issued.parent / "pki" / "private" / "devices" / "sensor-a-key.pem").write_text("damaged")
    result = gen("pki", "issue", issued)
    assert result.returncode == 2 and "sensor-a-key.pem is not a readable private key" in result.stderr


# ------------------------------------------------------------------------------------------------ inspect


def test_inspect_explains_the_broker_cert_and_confirms_chain_and_key(issued, gen):
    pki = issued.parent / "pki"
    result = gen("inspect", pki / "broker.pem", "--ca", issued, "--key", pki / "private" / "broker-key.pem")
    assert result.returncode == 0, result.stderr
    assert "broker (TLS server) certificate" in result.stdout
    assert "DNS:192.168.1.10" in result.stdout and "IP:192.168.1.10" in result.stdout
    assert "yes: 'mqtt.example.com' <- 'cli-pki Issuing CA' <- 'cli-pki Root CA'" in result.stdout
    assert "matches --key" in result.stdout and "ECDSA P-256" in result.stdout


def test_inspecting_a_cert_from_another_ca_exits_2(issued, gen):
    result = gen_process("inspect", TUTORIAL / "server.crt", "--ca", issued)
    assert result.returncode == 2
    assert "does not chain to this project's CA" in result.stderr
    assert "no subjectAltName" in result.stdout  # and it still explains what it is


def test_inspecting_a_cert_with_a_key_that_is_not_its_own_exits_2(issued, gen):
    pki = issued.parent / "pki"
    result = gen("inspect", pki / "devices" / "sensor-a.pem", "--key", pki / "private" / "devices" / "sensor-b-key.pem")
    assert result.returncode == 2 and "does not belong to this certificate" in result.stderr


def test_inspect_reads_keys_csrs_and_der(tmp_path, gen):
    key = gen("inspect", TUTORIAL / "server.key")
    assert key.returncode == 0 and "private key" in key.stdout and "RSA 2048" in key.stdout
    csr = gen("inspect", TUTORIAL / "server.csr", "--key", TUTORIAL / "server.key")
    assert csr.returncode == 0 and "certificate signing request" in csr.stdout and "yes" in csr.stdout
    der = tmp_path / "server.der"
    assert gen("inspect", TUTORIAL / "server.crt", "--to", "der", "--out", der).returncode == 0
    assert x509.load_der_x509_certificate(der.read_bytes()) == \
        x509.load_pem_x509_certificate((TUTORIAL / "server.crt").read_bytes())
    explained = gen("inspect", der)
    assert explained.returncode == 0 and "(DER, 1 object)" in explained.stdout


def test_converting_a_key_writes_it_0600(tmp_path, gen):
    out = tmp_path / "server.key.der"
    assert gen("inspect", TUTORIAL / "server.key", "--to", "der", "--out", out).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600


def test_inspecting_something_that_is_not_a_cert_exits_2(tmp_path, gen):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a certificate")
    result = gen("inspect", junk)
    assert result.returncode == 2 and "not a certificate, private key, CSR or CRL" in result.stderr
    missing = gen("inspect", tmp_path / "nope.pem")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_inspect_confirms_a_fresh_crl_and_flags_one_past_its_next_update(issued, gen, tmp_path):
    fresh = gen("inspect", issued.parent / "pki" / "crl.pem", "--ca", issued)
    assert fresh.returncode == 0 and "certificate revocation list" in fresh.stdout
    assert "signed by project CA" in fresh.stdout and "past its next update" not in fresh.stdout
    store = PkiStore.open(issued.parent / "pki", project="cli-pki", create=False)
    issuer = profiles.CertificateAuthority(store.issuing_ca_cert, profiles.load_private_key_pem(
        store.layout.issuing_key.read_bytes(), "issuing key"))
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60)
    stale = profiles.build_crl([], issuer=issuer, crl_number=99, now=long_ago, validity_days=30)
    (tmp_path / "stale.pem").write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    flagged = gen("inspect", tmp_path / "stale.pem", "--ca", issued)
    assert "past its next update: Mosquitto rejects EVERY client cert" in flagged.stdout


def test_gen_generate_under_umask_000_gives_every_pki_folder_its_own_mode(spec):
    result = subprocess.run([sys.executable, "-m", "generator", "generate", str(spec)], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120, preexec_fn=lambda: os.umask(0))
    assert result.returncode == 0, result.stderr
    root = spec.parent / "pki"
    modes = {str(d.relative_to(root)): d.stat().st_mode & 0o777 for d in [root, *root.rglob("*")] if d.is_dir()}
    assert modes == {".": 0o755, "devices": 0o755, "clients": 0o755, "private": 0o700, "private/devices": 0o700,
                     "private/clients": 0o700, "private/passwords": 0o700}
    assert not [p for p in root.rglob("*") if p.stat().st_mode & 0o022]


def test_a_spec_with_a_passphrase_generates_and_then_needs_it_only_to_sign_and_says_so(spec, gen):
    spec.write_text(SPEC.replace("devices:\n", "pki:\n  ca_passphrase_env: CLI_CA_PASS\ndevices:\n"))
    first = gen("generate", spec, env={"CLI_CA_PASS": "a long passphrase"})
    assert first.returncode == 0, first.stderr
    assert "gen: the CA keys are encrypted: reading their passphrase from $CLI_CA_PASS to create the CA" in first.stderr
    assert not list((spec.parent / "pki" / "private").glob("*ca-key.pem"))
    everyday = gen("generate", spec)                                  # the variable is not set: not needed
    assert everyday.returncode == 0 and "passphrase" not in everyday.stderr
    spec.write_text(spec.read_text() + "  - id: sensor-c\n")
    needs = gen("generate", spec)
    assert needs.returncode == 2 and "must issue 1 new device certificate (sensor-c)" in needs.stderr
    assert "a long passphrase" not in needs.stderr + needs.stdout
