"""pytest-embedded on the host build: a generated project's `test/test_device.py` runs unchanged, its `dut` being
the firmware compiled for Linux (`generator.simulate.host_build`) and talking to the generated broker over TLS.

    cd OUT/devices/<id>/firmware
    pytest -p generator.simulate.pytest_host_dut test/                # compiles, starts OUT/broker on a free port, runs
    pytest -p generator.simulate.pytest_host_dut test/ --host-broker 127.0.0.1:8883   # a broker that is already running

The `dut` is pytest-embedded's own `Dut` class (same `expect`, `expect_exact`, `write`, same errors), reading the
device's stdout through pytest-embedded's `PexpectProcess`; `write` goes to the device's stdin. This plugin's
fixtures are registered after pytest-embedded's, so its `dut` is the one tests get.

Options: --host-firmware DIR (default: the directory holding the test's `test/` folder), --host-binary PATH
(skip compiling), --host-broker HOST:PORT (skip starting the broker), --host-build-cache DIR. A whole fleet's tests
run in one session (one broker, one binary per firmware): `pytest -p generator.simulate.pytest_host_dut --import-mode
importlib OUT/devices/*/firmware/test` (every project's test file is named test_device.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from generator.core.errors import UserError
from generator.core.files import write_tree
from generator.output.layout import BROKER_DIR, MANIFEST_NAME
from generator.output.manifest import read_manifest
from generator.pki.spec_credentials import spec_credentials
from generator.simulate.bootloader import boot
from generator.simulate.device_runs import BrokerAddress, DeviceRun
from generator.simulate.processes import STOP_GRACE_S


@dataclass(frozen=True)
class HostFirmware:
    """A generated firmware project: where OUT is, whose it is, and the spec it was generated from."""

    firmware_dir: Path
    out_dir: Path
    device_id: str
    framework: str
    spec_path: Path

    @property
    def broker_dir(self) -> Path:
        return self.out_dir / BROKER_DIR


def find_host_firmware(firmware_dir: Path) -> HostFirmware:
    """Finds OUT/manifest.json above OUT/devices/<id>/firmware and the device entry that owns this directory."""
    firmware_dir = Path(firmware_dir).resolve()
    for out_dir in firmware_dir.parents:
        if (out_dir / MANIFEST_NAME).is_file():
            manifest = read_manifest(out_dir)
            for device in manifest.devices:
                if (out_dir / device.firmware_dir).resolve() == firmware_dir:
                    return HostFirmware(firmware_dir, out_dir, device.id, device.framework, Path(manifest.spec))
            break
    raise UserError(f"{firmware_dir} is not a firmware directory of a `gen generate` output",
                    hint="run the tests of OUT/devices/<id>/firmware, or pass --host-firmware DIR")


def backend_environment(spec, broker: BrokerAddress, directory: Path) -> dict[str, str]:
    """Environment for a client with the spec's backend identity (files written 0600 into `directory`). The host it
    names is one the broker certificate carries for `broker`'s address, so the client's hostname check passes."""

    local = ("127.0.0.1", "localhost") if broker.host in ("127.0.0.1", "localhost") else ()
    tls_name = next((name for name in (broker.host, *local) if name in spec.broker.names), None)
    if tls_name is None:
        return {}      # no name on the broker cert reaches this address: test_device.py skips its round trip
    backend = spec_credentials(spec).backend
    files = {"ca.pem": backend.ca_pem}
    if backend.cert_pem is not None and backend.key_pem is not None:
        files |= {"client.pem": backend.cert_pem, "client.key": backend.key_pem}
    write_tree(directory, files, modes={"client.key": 0o600})
    env = {"GEN_BROKER_HOST": tls_name, "GEN_BROKER_PORT": str(broker.port), "GEN_CA": str(directory / "ca.pem")}
    if "client.pem" in files:
        env |= {"GEN_CLIENT_CERT": str(directory / "client.pem"), "GEN_CLIENT_KEY": str(directory / "client.key")}
    if backend.password is not None:
        env |= {"GEN_USERNAME": backend.name, "GEN_PASSWORD": backend.password}
    return env


class HostDutProcess:
    """The device process behind a `dut`: stdout into pytest-embedded's PexpectProcess, stdin for `write`."""

    def __init__(self, run: DeviceRun, logfile: Path):
        from pytest_embedded.log import PexpectProcess  # the test extra (pytest-embedded): only when pytest runs

        self._log = open(logfile, "ab")
        binary, env = run.binary, run.env
        if run.flash is not None:        # a device that updates over the air: the image its bootloader picks
            chosen = boot(run.flash)
            binary = chosen.executable
            env |= run.flash.environment(chosen.slot)
        self.process = subprocess.Popen([str(binary)], env={**os.environ, **env},
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        assert self.process.stdin is not None and self.process.stdout is not None   # both PIPE
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.pexpect_proc = PexpectProcess(self.stdout.fileno(), timeout=30)
        self.pexpect_proc.logfile_read = self._log

    def put(self, data: bytes) -> None:
        """pytest-embedded's Dut.write() puts bytes on its message queue; here they go to the device's stdin."""
        with contextlib.suppress(BrokenPipeError):
            self.stdin.write(data)
            self.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except Exception:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            self.stdin.close()
        self.stdout.close()
        self._log.close()


def plugin_option(config: pytest.Config, name: str) -> str | None:
    return config.getoption(name, default=None)


def host_dut_fixtures() -> types.ModuleType:
    """The fixtures (generator.simulate.host_dut_fixtures), as a plugin registered in pytest_configure: after
    pytest-embedded's, so this `dut` is the one tests get."""
    from generator.simulate import host_dut_fixtures as fixtures

    return fixtures


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gen host dut", "run a generated firmware's tests against its host build")
    group.addoption("--host-firmware", metavar="DIR", help="the firmware project (default: the test's project)")
    group.addoption("--host-binary", metavar="PATH", help="an already compiled host build of that project")
    group.addoption("--host-broker", metavar="HOST:PORT", help="a running broker (default: start OUT/broker)")
    group.addoption("--host-build-cache", metavar="DIR", help="the host build cache directory")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(host_dut_fixtures(), "gen-host-dut-fixtures")
