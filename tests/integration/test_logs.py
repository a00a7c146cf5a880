"""`gen logs`: a device's log without a cable. The real firmware (both flavours, on the host runtime) publishes the
lines its serial log shows to its log topic, at the spec's level, rate-limited on the device; `gen logs` follows
them through the real Mosquitto as gen.logs; --serial reads the port as `gen monitor` does; and the ACL keeps one
device's log from every other device."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import mqtt_session
from fake_tools.fixtures import fake_tools, gen_cli  # noqa: F401  (fixtures)
from fake_tools.out_layout import copy_example
from generator.logs.follow import follow_log
from generator.output.generate import generate, spec_credentials
from generator.spec import load_spec
from simulate_support import CONNECTED, EXAMPLES_DIR, WAIT_S, SimDevice, SimProject, send_command, simulated_project

FLAVOURS = ("arduino-mtls", "espidf-mtls")   # the examples whose spec turns the log on (level info)


def project_with_log(name: str, tmp_path: Path, log_yaml: str) -> SimProject:
    """projects/examples/<name> with its `log:` replaced by `log_yaml`, generated into OUT."""
    directory = tmp_path / name
    shutil.copytree(EXAMPLES_DIR / name, directory, ignore=shutil.ignore_patterns("pki", "build"))
    spec_file = directory / "device.yaml"
    text = re.sub(r"(?m)^log:\n(  .*\n)*", "", spec_file.read_text())
    spec_file.write_text(text + log_yaml)
    spec = load_spec(spec_file)
    generate(spec, spec.default_out_dir)
    return SimProject(spec, spec.default_out_dir, spec_credentials(spec))


class Following:
    """`gen logs SPEC --device ID --broker HOST:PORT` running; its stdout lines as they come."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT_S) -> str:
        regex = re.compile(pattern)
        for line in self.lines:
            if regex.search(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if regex.search(line):
                return line
        raise AssertionError(f"gen logs never showed /{pattern}/; it showed:\n" + "\n".join(self.lines[-40:]))

    def settle(self, seconds: float) -> list[str]:
        """Every line shown, after `seconds` more of reading."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.lines


@contextlib.contextmanager
def following(project: SimProject, device_id: str, broker) -> Iterator[Following]:
    process = subprocess.Popen([sys.executable, "-m", "generator", "logs", str(project.spec.path), "--device",
                                device_id, "--broker", f"{broker.host}:{broker.port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        ready = process.stderr.readline()          # said once the broker has the subscription
        assert ready.startswith(f"following {device_id}'s log on "), ready + process.stderr.read()
        yield Following(process)
    finally:
        process.terminate()
        process.wait(timeout=WAIT_S)


@contextlib.contextmanager
def listening_device(project: SimProject, broker) -> Iterator[tuple[Following, object, SimDevice]]:
    """`gen logs` following the project's device, the backend's session, and the device running with its command
    subscription sent: (logs, backend, device)."""
    device_id = project.device().id
    with following(project, device_id, broker) as logs, mqtt_session(broker, project.credentials.backend) as backend:
        with SimDevice.start(project.run_for(device_id, broker)) as running:
            running.wait_for(r"\[mqtt\] subscribed to ")
            yield logs, backend, running


def command_topic(project: SimProject, leaf: str) -> str:
    """A topic of the device's command filter (`.../cmd/#`), ending in `leaf`."""
    return project.device().subscribe[0].filter.removesuffix("/#") + "/" + leaf


@pytest.mark.parametrize("name", FLAVOURS)
def test_gen_logs_shows_the_lines_a_simulated_device_prints_as_it_prints_them(name, tmp_path_factory, start_broker):
    project = simulated_project(name, tmp_path_factory)
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    with following(project, device_id, broker) as logs:
        with SimDevice.start(project.run_for(device_id, broker)) as device:
            device.wait_for(CONNECTED)
            shown = logs.wait_for(CONNECTED)
            boot = logs.wait_for(rf"\[boot\] device {device_id} ")
            device.drain()
            assert shown in device.lines and boot in device.lines   # the serial port's lines, word for word


def test_lines_below_the_spec_level_are_not_published(tmp_path, start_broker):
    project = project_with_log("espidf-mtls", tmp_path, "log:\n  level: warn\n")
    device = project.device()
    broker = start_broker(project.broker_dir)
    oversized = "x" * (device.subscribe[0].max_payload + 100)
    with listening_device(project, broker) as (logs, backend, running):
        backend.publish(command_topic(project, "blink"), oversized.encode())
        warning = running.wait_for(r"^W \(\d+\) link: \[mqtt\] dropped ").string
        logs.wait_for(re.escape(warning))
        shown = logs.settle(1.0)
    assert any(line.startswith("I (") for line in running.lines)   # the device did print info lines
    assert [line for line in shown if not line.startswith(("W (", "E ("))] == []


@pytest.mark.parametrize("name", FLAVOURS)
def test_a_flood_of_lines_is_rate_limited_on_the_device_and_the_dropped_lines_are_counted(name, tmp_path,
                                                                                           start_broker):
    project = project_with_log(name, tmp_path, "log:\n  level: info\n  rate: 1\n  burst: 5\n")
    broker = start_broker(project.broker_dir)
    topic = command_topic(project, "blink")
    with listening_device(project, broker) as (logs, backend, running):
        for index in range(20):
            send_command(backend, running, topic, f"flood {index}")
        time.sleep(2.5)                           # the bucket refills two lines
        send_command(backend, running, topic, "after the flood")
        said = logs.wait_for(r"\[log\] (\d+) lines dropped ")
        running.drain()
        printed = len(running.lines)
    dropped = int(re.search(r"\[log\] (\d+) lines dropped", said)[1])
    assert dropped >= 20 and len(logs.lines) < printed - 20


APP_LOG_LINES = {   # the line of the example's command handler after which gen_link_log is called twice
    "arduino-mtls": ("src/app.cpp", 'Serial.printf("[app] command on %s: %.*s\\n", topic, static_cast<int>(length), '
                     'reinterpret_cast<const char*>(payload));'),
    "espidf-mtls": ("src/app.c", 'ESP_LOGI(TAG, "[app] command on %s: %.*s", topic, (int)length, '
                    '(const char *)payload);'),
}


@pytest.mark.parametrize("name", FLAVOURS)
def test_the_apps_gen_link_log_lines_reach_the_log_topic_with_their_level(name, tmp_path, start_broker):
    project = project_with_log(name, tmp_path, "log:\n  level: warn\n")
    app_file, handler_line = APP_LOG_LINES[name]
    app = project.spec.path.parent / app_file
    assert handler_line in app.read_text()
    calls = (' gen_link_log(GEN_LINK_LOG_WARN, "soil too dry: %.*s", (int)length, (const char *)payload);'
             ' gen_link_log(GEN_LINK_LOG_INFO, "only on the port");')
    app.write_text(app.read_text().replace(handler_line, handler_line + calls))
    broker = start_broker(project.broker_dir)
    with listening_device(project, broker) as (logs, backend, running):
        send_command(backend, running, command_topic(project, "water"), "12%")
        printed = running.wait_for(r"^W \(\d+\) app: soil too dry: 12%$").string
        running.wait_for(r"^I \(\d+\) app: only on the port$")
        logs.wait_for(re.escape(printed))
        shown = logs.settle(1.0)
    assert not any("only on the port" in line for line in shown)


def test_gen_logs_serial_reads_the_port_as_gen_monitor_does(tmp_path, fake_tools, gen_cli):  # noqa: F811
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    code, _stdout, err = gen_cli("logs", spec_path, "--device", "sensor-04", "--serial", "--port", "/dev/null")
    assert code == 0, err
    monitor = [c["argv"] for c in fake_tools.calls("pio") if c["argv"][:2] == ["device", "monitor"]]
    assert monitor and monitor[0][:4] == ["device", "monitor", "-p", "/dev/null"]


def test_another_device_cannot_read_this_devices_log(tmp_path, start_broker):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    spec_path.write_text(spec_path.read_text() + "log:\n  level: info\n")
    spec = load_spec(spec_path)
    generate(spec, spec.default_out_dir)
    credentials = spec_credentials(spec)
    this, other = spec.devices[0], spec.devices[1]
    assert this.log is not None
    broker = start_broker(spec.default_out_dir / "broker")
    with mqtt_session(broker, credentials.devices[other.id]) as eavesdropper:
        eavesdropper.subscribe(this.log.topic)
        shown: list[str] = []
        reader = threading.Thread(target=follow_log, args=(spec, this, shown.append, (broker.host, broker.port), 1),
                                  daemon=True)
        reader.start()
        with mqtt_session(broker, credentials.devices[this.id]) as device:
            deadline = time.monotonic() + WAIT_S
            while not shown and time.monotonic() < deadline:   # until gen.logs has subscribed and got one
                device.publish(this.log.topic, b"I (12) link: [mqtt] a line only gen logs may read", qos=0)
                time.sleep(0.2)
        reader.join(WAIT_S)
        assert shown == ["I (12) link: [mqtt] a line only gen logs may read"]
        with pytest.raises(queue.Empty):
            eavesdropper.messages.get(timeout=1.0)


def test_gen_logs_for_a_device_without_log_says_how_to_turn_it_on(tmp_path, gen_cli):  # noqa: F811
    spec_path = copy_example("espidf-password", tmp_path / "plain")
    code, _stdout, err = gen_cli("logs", spec_path, "--device", load_spec(spec_path).devices[0].id)
    assert code == 2 and "log.level is none" in err and "log: {level: info}" in err and "--serial" in err


def test_gen_logs_finds_the_broker_through_gen_broker_and_says_so(tmp_path, start_broker):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    spec_path.write_text(spec_path.read_text() + "log:\n  level: info\n")
    spec = load_spec(spec_path)
    generate(spec, spec.default_out_dir)
    this = spec.devices[0]
    assert this.log is not None
    broker = start_broker(spec.default_out_dir / "broker")
    environment = {**os.environ, "GEN_BROKER": f"{broker.host}:{broker.port}"}
    process = subprocess.Popen([sys.executable, "-m", "generator", "logs", str(spec_path), "--device", this.id,
                                "--lines", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=environment)
    try:
        assert process.stderr is not None
        said = process.stderr.readline()
        ready = process.stderr.readline()
        assert said.startswith(f"gen: broker {broker.host}:{broker.port} (from $GEN_BROKER"), said + ready
        assert ready.startswith(f"following {this.id}'s log on "), ready
        with mqtt_session(broker, spec_credentials(spec).devices[this.id]) as device:
            device.publish(this.log.topic, b"I (7) link: [boot] a line", qos=0)
            stdout, _ = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and stdout == "I (7) link: [boot] a line\n"
