"""`gen doctor` as a user runs it: ✓/✗ per step with a fix line, exit 0 / 1, the same steps as JSON, usage errors as
exit 2, and never a secret on the screen or a change in the PKI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import LOOPBACK, BrokerProject, find_free_port
from generator.cli import main

DEVICE = "sensor-a"


def run_gen(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def secrets_of(project: BrokerProject) -> list[str]:
    """Every secret doctor reads: passwords, and the body lines of every private key."""
    found = []
    for name in (DEVICE, "backend"):
        client = project.client(name)
        if client.password:
            found.append(client.password)
        if client.key_pem:
            found += [line for line in client.key_pem.decode().splitlines() if "-----" not in line]
    found += [line for line in project.credentials.broker.key_pem.decode().splitlines() if "-----" not in line]
    assert found
    return found


def pki_snapshot(project: BrokerProject) -> dict[str, tuple[str, int, int]]:
    root = Path(project.spec.pki.dir)
    return {str(path.relative_to(root)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns,
                                          path.stat().st_mode)
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_healthy_link_prints_a_tick_per_step_and_exits_0(capsys, broker_project, start_broker):
    project = broker_project("mtls")
    broker = start_broker(project.broker_dir)
    code, output = run_gen(capsys, "doctor", str(project.spec.path), "--device", DEVICE, "--broker",
                           f"{LOOPBACK}:{broker.port}")
    assert code == 0, output
    assert output.count("✓") == 7 and "✗" not in output
    assert "verifying localhost" in output


def test_a_failure_prints_a_cross_and_a_fix_skips_the_rest_and_exits_1(capsys, broker_project):
    project = broker_project("mtls")
    code, output = run_gen(capsys, "doctor", str(project.spec.path), "--device", DEVICE, "--broker",
                           f"{LOOPBACK}:{find_free_port()}")
    assert code == 1
    assert output.count("✓") == 2 and output.count("✗") == 1
    assert "3. TCP connects: connection to" in output and "fix: start the broker" in output
    assert output.count("skipped") == 4


def test_json_gives_the_same_steps_with_their_status(capsys, broker_project):
    project = broker_project("password")
    code, output = run_gen(capsys, "doctor", str(project.spec.path), "--device", DEVICE, "--broker",
                           f"{LOOPBACK}:{find_free_port()}", "--json")
    assert code == 1
    report = json.loads(output)
    assert report["device"] == DEVICE and report["server_name"] == "localhost" and report["ok"] is False
    assert [(s["step"], s["status"]) for s in report["steps"]] == [
        ("pki", "ok"), ("resolve", "ok"), ("tcp", "failed"), ("tls", "skipped"), ("client-cert", "skipped"),
        ("mqtt-connect", "skipped"), ("acl", "skipped")]
    assert report["steps"][2]["fix"]


@pytest.mark.parametrize("auth", ["mtls+password", "password"])
def test_doctor_never_prints_a_secret_whether_the_link_works_or_not(auth, capsys, broker_project, copy_project,
                                                                    start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    outputs = []
    for extra in ([], ["--json"]):
        outputs.append(run_gen(capsys, "doctor", str(project.spec.path), "--device", DEVICE, "--broker",
                               f"{LOOPBACK}:{broker.port}", *extra))
    assert [code for code, _ in outputs] == [0, 0]
    broken = copy_project(project)  # the device holds a password the broker does not know
    (Path(broken.spec.pki.dir) / "private" / "passwords" / f"{DEVICE}.txt").write_text("wrong-but-secret-too\n")
    outputs.append(run_gen(capsys, "doctor", str(broken.spec.path), "--device", DEVICE, "--broker",
                           f"{LOOPBACK}:{broker.port}", "--json"))
    assert outputs[-1][0] == 1 and '"mqtt-connect"' in outputs[-1][1]
    for _, output in outputs:
        for secret in [*secrets_of(project), "wrong-but-secret-too"]:
            assert secret not in output
        assert "PRIVATE KEY" not in output


def test_doctor_changes_nothing_in_the_pki(capsys, broker_project, start_broker):
    project = broker_project("mtls+password")
    broker = start_broker(project.broker_dir)
    before = pki_snapshot(project)
    code, output = run_gen(capsys, "doctor", str(project.spec.path), "--device", "sensor-b", "--broker",
                           f"{LOOPBACK}:{broker.port}")
    assert code == 0, output
    assert pki_snapshot(project) == before


def test_a_spec_with_several_devices_needs_device_and_says_which(capsys, broker_project):
    project = broker_project("mtls")
    code, output = run_gen(capsys, "doctor", str(project.spec.path))
    assert code == 2
    assert "--device" in output and "sensor-a, sensor-b" in output


def test_a_broker_address_without_a_valid_port_is_a_usage_error(capsys, broker_project):
    project = broker_project("mtls")
    code, output = run_gen(capsys, "doctor", str(project.spec.path), "--device", DEVICE, "--broker", "host:port")
    assert code == 2
    assert "HOST:PORT" in output


def test_a_project_without_a_pki_fails_the_first_step(capsys, tmp_path, broker_project):
    spec_path = tmp_path / "device.yaml"
    spec_path.write_text(Path(broker_project("mtls").spec.path).read_text())
    code, output = run_gen(capsys, "doctor", str(spec_path), "--device", DEVICE)
    assert code == 1
    assert "✗ 1." in output and "no PKI" in output
    assert not (tmp_path / "pki").exists()
