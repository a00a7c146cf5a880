"""`clients:` (issue 26, item 1): named identities besides the devices, each with its own certificate and client
id, so they run side by side; read-only unless they say otherwise; never writers of gen's OTA topics. The lines
`gen pki show` prints are run as they are, with the real mosquitto_sub / mosquitto_pub, against real mosquitto."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES_DIR, find_free_port
from generator.cli import main

CLIENTS = """clients:
  - name: operator
    subscribe: ["devices/+/status"]
  - name: dashboard
    subscribe: ["devices/+/telemetry"]
    publish: ["devices/+/cmd/#"]
"""


def run_gen(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def publish_until_heard(watching: subprocess.Popen, lines: list[list[str]], cwd: Path, *,
                        check: bool) -> tuple[str, str]:
    """Runs each publish command in turn until `watching` (a mosquitto_sub -C 1) has heard one message and ended:
    its SUBACK is not observable from here. `check`: each publish must succeed. Returns its (stdout, stderr)."""
    while watching.poll() is None:
        for line in lines:
            done = subprocess.run(line, cwd=cwd, capture_output=True, text=True, timeout=30)
            assert not check or done.returncode == 0, done.stderr
        try:
            return watching.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
    return watching.communicate()


def project_with_clients(tmp_path: Path, example: str = "arduino-mtls", *, port: int = 8883,
                         clients: str = CLIENTS) -> Path:
    project = tmp_path / example
    shutil.copytree(EXAMPLES_DIR / example, project, ignore=shutil.ignore_patterns("pki", "build"))
    spec = project / "device.yaml"
    text = spec.read_text().replace("host: mqtt.example.com", "host: localhost").replace("port: 8883",
                                                                                          f"port: {port}")
    spec.write_text(text + clients)
    return spec


def shown_lines(capsys, spec: Path, name: str) -> list[list[str]]:
    code, output = run_gen(capsys, "pki", "show", str(spec), name)
    assert code == 0, output
    return [shlex.split(line.strip()) for line in output.splitlines() if line.strip().startswith("mosquitto_")]


@pytest.fixture
def running_project(tmp_path, capsys, start_broker):
    port = find_free_port()
    spec = project_with_clients(tmp_path, port=port)
    code, output = run_gen(capsys, "generate", str(spec))
    assert code == 0, output
    start_broker(spec.parent / "build" / "broker", port=port)
    return spec


def test_an_operator_reads_device_status_with_its_shown_line_while_the_backend_and_dashboard_connect(
        capsys, running_project):
    spec = running_project
    operator = shown_lines(capsys, spec, "operator")
    assert [line[0] for line in operator] == ["mosquitto_sub"]
    watching = subprocess.Popen(operator[0] + ["-C", "1", "-W", "20", "-q", "1"], cwd=spec.parent,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        backend_pub = next(line for line in shown_lines(capsys, spec, "backend") if line[0] == "mosquitto_pub")
        dashboard_pub = next(line for line in shown_lines(capsys, spec, "dashboard") if line[0] == "mosquitto_pub")
        device = ["mosquitto_pub", "-h", "localhost", "-p", backend_pub[backend_pub.index("-p") + 1],
                  "--cafile", "pki/ca.pem", "--cert", "pki/devices/greenhouse-01.pem", "--key",
                  "pki/private/devices/greenhouse-01-key.pem", "-q", "1",
                  "-t", "devices/greenhouse-01/status", "-m", "online"]
        # The backend and the dashboard log in (each with its own client id) while the operator listens; then
        # the device says its status. Repeated until the operator's subscription is in place (-C 1 ends it).
        out, err = publish_until_heard(watching, [backend_pub + ["-q", "1"], dashboard_pub + ["-q", "1"], device],
                                       spec.parent, check=True)
    finally:
        watching.kill()
    assert watching.returncode == 0, err
    assert out.strip() == "devices/greenhouse-01/status online"


def test_a_client_reading_two_filters_hears_both_with_its_one_shown_line(capsys, tmp_path, start_broker):
    port = find_free_port()
    spec = project_with_clients(tmp_path, port=port, clients="clients:\n  - name: operator\n    subscribe: "
                                "[\"devices/+/status\", \"devices/+/telemetry\"]\n")
    code, output = run_gen(capsys, "generate", str(spec))
    assert code == 0, output
    start_broker(spec.parent / "build" / "broker", port=port)
    operator = shown_lines(capsys, spec, "operator")
    assert [line[0] for line in operator] == ["mosquitto_sub"]   # one connection: a second would replace it
    watching = subprocess.Popen(operator[0] + ["-C", "2", "-W", "20"], cwd=spec.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    device = ["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", "pki/ca.pem", "--cert",
              "pki/devices/greenhouse-01.pem", "--key", "pki/private/devices/greenhouse-01-key.pem", "-q", "1"]
    status = device + ["-t", "devices/greenhouse-01/status", "-m", "online", "-r"]       # retained: heard once in
    telemetry = device + ["-t", "devices/greenhouse-01/telemetry", "-m", "{}"]
    try:
        subprocess.run(status, cwd=spec.parent, check=True, capture_output=True, timeout=30)
        out, err = publish_until_heard(watching, [telemetry], spec.parent, check=True)
    finally:
        watching.kill()
    assert watching.returncode == 0, err
    assert sorted(out.split("\n")[:2]) == ["devices/greenhouse-01/status online", "devices/greenhouse-01/telemetry {}"]


def test_a_client_without_publish_is_read_only_at_the_broker(capsys, running_project):
    spec = running_project
    dashboard_pub = next(line for line in shown_lines(capsys, spec, "dashboard") if line[0] == "mosquitto_pub")
    backend_sub = next(line for line in shown_lines(capsys, spec, "backend") if line[0] == "mosquitto_sub")
    watching = subprocess.Popen(backend_sub + ["-C", "1", "-W", "20"], cwd=spec.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        # The backend's SUBACK is not observable from here: the dashboard's own publish, after the operator's,
        # proves order; retry the pair until the subscription is in place.
        operator = dashboard_pub[:]
        operator[operator.index("--cert") + 1] = "pki/clients/operator.pem"
        operator[operator.index("--key") + 1] = "pki/private/clients/operator-key.pem"
        operator[operator.index("-i") + 1] = "operator"
        operator[operator.index("-m") + 1] = "from-operator"
        out, err = publish_until_heard(watching, [operator + ["-q", "1"], dashboard_pub + ["-q", "1"]], spec.parent,
                                       check=False)
    finally:
        watching.kill()
    assert out.strip() == "devices/greenhouse-01/cmd/test hello", err


def test_a_client_that_would_write_an_ota_topic_is_refused_at_its_spec_line(capsys, tmp_path):
    spec = project_with_clients(tmp_path, "arduino-ota", clients="clients:\n  - name: rogue\n    publish: [\"devices/#\"]\n")
    code, output = run_gen(capsys, "check", str(spec))
    assert code == 2
    assert f"{spec}:" in output and "only gen's OTA publisher" in output


def test_pki_list_shows_each_client_and_pki_issue_accepts_its_name(capsys, tmp_path):
    spec = project_with_clients(tmp_path)
    code, output = run_gen(capsys, "pki", "issue", str(spec), "operator")
    assert code == 0, output
    code, output = run_gen(capsys, "pki", "list", str(spec))
    assert code == 0
    assert any(line.split()[:2] == ["operator", "client"] for line in output.splitlines()), output
