"""What the gen simulate tests share: example projects generated once per session, their firmware compiled once per
distinct source tree, and a simulated device a test can wait on line by line.

    project = simulated_project("arduino-mtls", tmp_path_factory)   # generated once per session
    with SimDevice.start(project.run_for(device_id, broker)) as device:   # compiled on first use
        device.wait_for(CONNECTED)
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import select
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from generator.pki.credentials import SpecCredentials
from generator.output.generate import generate
from generator.pki.spec_credentials import spec_credentials
from generator.output.layout import firmware_dir
from generator.output.manifest import read_manifest
from generator.broker.runner import RunningBroker
from generator.core.paths import PROJECT_ROOT
from generator.firmware.fingerprint import firmware_fingerprint
from generator.simulate.device_runs import BrokerAddress, DeviceRun, DeviceSummary, flash_devices, nvs_images, plan_runs
from generator.simulate.processes import DeviceProcess, stop_devices
from generator.simulate.run import compile_devices
from generator.spec import Spec, load_spec

EXAMPLES_DIR = PROJECT_ROOT / "projects" / "examples"
# The link tests run every example but the OTA ones, whose link tests/e2e/test_ota_update.py runs with their updates,
# and the ones whose key is born on the device, which tests/e2e/test_provision_lifecycle.py runs with their provisioning.
# The examples these Mosquitto-backed tests run; a RabbitMQ cluster example runs in its own failover test.
EXAMPLES = tuple(sorted(path.name for path in EXAMPLES_DIR.iterdir()
                        if (path / "device.yaml").is_file() and not path.name.endswith(("-ota", "-device-key"))
                        and "engine: rabbitmq" not in (path / "device.yaml").read_text()))
WAIT_S = 15.0          # an upper bound for something that happens at once on loopback; never a timed assertion
CONNECTED = r"\[mqtt\] connected to "


@dataclass(frozen=True)
class SimProject:
    """An example copied to a temp dir and generated into OUT; each distinct firmware compiled for the host the
    first time a test runs one of its devices."""

    spec: Spec
    out_dir: Path
    credentials: SpecCredentials
    _binaries: dict[str, Path] = dataclasses.field(default_factory=dict, repr=False)   # by firmware digest

    @property
    def broker_dir(self) -> Path:
        return self.out_dir / "broker"

    def device(self, device_id: str | None = None):
        return self.spec.device(device_id) if device_id else self.spec.devices[0]

    def binary(self, device_id: str) -> Path:
        digest = firmware_fingerprint(self.out_dir / firmware_dir(device_id))
        if digest not in self._binaries:
            self._binaries[digest] = compile_devices(self.spec, self.out_dir, [device_id], cache_dir=None)[device_id]
        return self._binaries[digest]

    def run_for(self, device_id: str, broker: RunningBroker, **env: str) -> DeviceRun:
        """How to run the device against `broker`; one that updates over the air gets a freshly flashed flash."""
        nvs = nvs_images(self.out_dir, read_manifest(self.out_dir))
        binaries = {device_id: self.binary(device_id)}
        (run,) = plan_runs(self.spec, [device_id], binaries, nvs, BrokerAddress(broker.host, broker.port),
                           flashes=flash_devices(self.spec, self.out_dir, [device_id], binaries))
        return dataclasses.replace(run, environment=run.environment + tuple(env.items()))


_projects: dict[tuple[str, Path], SimProject] = {}


def simulated_project(name: str, tmp_path_factory, *, secrets: str | None = None,
                      target: str | None = None) -> SimProject:
    """projects/examples/<name>, generated once per session, whichever test module asks first. `secrets` turns
    an example into its variant with secrets embedded or in NVS, `target` into its variant for another target."""
    root = tmp_path_factory.getbasetemp() / "simulate"
    key = (name + (f"+{secrets}" if secrets else "") + (f"+{target}" if target else ""), root)
    if key not in _projects:
        directory = root / key[0]
        shutil.copytree(EXAMPLES_DIR / name, directory, ignore=shutil.ignore_patterns("pki", "build"))
        if secrets:
            text = (directory / "device.yaml").read_text()
            (directory / "device.yaml").write_text(re.sub(r"(?m)^secrets: \w+$", f"secrets: {secrets}", text))
        if target:
            text = (directory / "device.yaml").read_text()
            (directory / "device.yaml").write_text(re.sub(r"(?m)^target: [\w-]+$", f"target: {target}", text))
        spec = load_spec(directory / "device.yaml")
        out = directory / "build"
        generate(spec, out)
        _projects[key] = SimProject(spec, out, spec_credentials(spec))
    return _projects[key]


class SimDevice:
    """A running simulated device whose output a test reads line by line."""

    def __init__(self, process: DeviceProcess):
        self.process = process
        self.lines: list[str] = []
        self._seen = 0          # lines already matched past by wait_for

    @classmethod
    @contextlib.contextmanager
    def start(cls, run: DeviceRun) -> Iterator["SimDevice"]:
        device = cls(DeviceProcess(run))
        try:
            yield device
        finally:
            device.process.close()

    @property
    def device_id(self) -> str:
        return self.process.device_id

    def _read(self, timeout: float) -> None:
        if not self.process.eof:
            select.select([self.process.fd], [], [], timeout)
            self.lines.extend(self.process.read_lines())

    def wait_for(self, pattern: str, timeout: float = WAIT_S) -> re.Match:
        """The first line after the previous match that matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._seen, len(self.lines)):
                match = regex.search(self.lines[index])
                if match:
                    self._seen = index + 1
                    return match
            self._seen = len(self.lines)
            if self.process.eof or time.monotonic() > deadline:
                raise AssertionError(f"{self.device_id} never printed /{pattern}/; its output:\n" + self.output())
            self._read(min(0.2, max(0.0, deadline - time.monotonic())))

    def drain(self) -> None:
        self._read(0)

    def output(self) -> str:
        self.drain()
        return "\n".join(self.lines[-60:])

    def pause(self) -> None:
        """SIGSTOP: the device freezes where it is (a debugger's halt); what reaches its sockets waits."""
        self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the process vanishes without a word (a device losing power)."""
        self.process.signal(signal.SIGKILL)
        self.process.process.wait()
        self.drain()

    def stop(self) -> DeviceSummary:
        (summary,) = stop_devices([self.process], on_line=lambda _id, line: self.lines.append(line))
        return summary


def reconnect_bound_s() -> float:
    """How long a device may take to come back after a quick broker restart: its first three backoff delays
    (1 s, 2 s, 4 s at most) plus a TLS handshake, in seconds."""
    from generator.firmware.facts import MQTT_RETRY_FIRST_MS, TLS_HANDSHAKE_TIMEOUT_S

    return sum(MQTT_RETRY_FIRST_MS * 2 ** attempt for attempt in range(3)) / 1000 + TLS_HANDSHAKE_TIMEOUT_S


def send_command(backend, device: SimDevice, topic: str, payload: str, attempts: int = 5) -> None:
    """Publishes a command until the device's handler logs it. A device logs "subscribed" when its SUBSCRIBE is
    sent, not when the broker has it: a command that overtakes it is lost (clean session), on a board too."""
    for _ in range(attempts):
        backend.publish(topic, payload.encode())
        try:
            device.wait_for(rf"\[app\] \w+ on {re.escape(topic)}: {re.escape(payload)}", timeout=1.0)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{device.device_id} never handled {payload!r} on {topic}:\n{device.output()}")
