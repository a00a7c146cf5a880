"""`gen doctor` for a device that makes its own key (key_origin: device; issue 26, item 5): gen never holds that
key, so doctor neither asks for it nor sends the user to `gen generate`; it names provisioning when the device has
no certificate yet, and probes the broker as far as it can without the device's key (real mosquitto)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import EXAMPLES_DIR, LOOPBACK, find_free_port
from generator.cli import main
from generator.output.generate import generate
from generator.pki.store import PkiStore
from generator.spec import load_spec

DEVICE = "greenhouse-key-01"


def run_gen(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def generated(tmp_path: Path) -> Path:
    project = tmp_path / "device-key"
    shutil.copytree(EXAMPLES_DIR / "arduino-device-key", project, ignore=shutil.ignore_patterns("pki", "build"))
    generate(load_spec(project / "device.yaml"), project / "build")
    return project / "device.yaml"


def test_doctor_sends_a_device_without_its_certificate_yet_to_provisioning_not_to_gen_generate(capsys, tmp_path):
    spec = generated(tmp_path)
    code, output = run_gen(capsys, "doctor", str(spec), "--broker", f"{LOOPBACK}:{find_free_port()}")
    assert code == 1
    assert "has no certificate yet" in output and f"gen provision serve {spec}" in output
    assert "no private key" not in output and "gen generate" not in output


def test_doctor_passes_a_provisioned_device_without_its_key_and_says_what_it_could_not_probe(
        capsys, tmp_path, start_broker):
    spec_path = generated(tmp_path)
    spec = load_spec(spec_path)
    store = PkiStore.open(Path(spec.pki.dir), project=spec.project, key_type=spec.pki.key_type, create=False)
    entry, _ = store.issue_from_public_key(DEVICE, ec.generate_private_key(ec.SECP256R1()).public_key(),
                                           validity_days=90, request="test", via="test",
                                           renew_at=lambda not_after: not_after - dt.timedelta(days=30))
    store.confirm(DEVICE, entry.serial)
    generate(spec, spec_path.parent / "build")
    broker = start_broker(spec_path.parent / "build" / "broker")
    code, output = run_gen(capsys, "doctor", str(spec_path), "--broker", f"{LOOPBACK}:{broker.port}")
    assert code == 0, output
    assert output.count("✓") == 4 and "✗" not in output
    assert output.count("not probed as the device: its key lives only on the device") == 3
