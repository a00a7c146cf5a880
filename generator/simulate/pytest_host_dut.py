"""pytest-embedded on the host build: a generated project's `test/test_device.py` runs unchanged, its `dut` being
the firmware compiled for Linux (`generator.simulate.host_build`) and talking to the generated broker over TLS.

    cd OUT/devices/<id>/firmware
    pytest -p generator.simulate.pytest_host_dut test/                 # compiles, starts OUT/broker on a free port, runs
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
from typing import Iterator

import pytest

from generator.broker.runner import running_broker
from generator.core.errors import UserError
from generator.core.files import write_tree
from generator.pki.spec_credentials import spec_credentials
from generator.output.layout import BROKER_DIR, MANIFEST_NAME
from generator.output.manifest import read_manifest
from generator.simulate.bootloader import boot
from generator.simulate.host_build import compile_firmware
from generator.simulate.device_runs import LOCAL_ADDRESS, BrokerAddress, DeviceRun, flash_devices, nvs_images, parse_broker_address, plan_runs
from generator.simulate.processes import STOP_GRACE_S
from generator.simulate.device_runs import default_host_build_cache
from generator.simulate.run import free_local_port
from generator.spec import load_spec


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
            env |= {"GEN_SIM_FLASH": str(run.flash.path), "GEN_SIM_BOOT_SLOT": chosen.slot}
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


def _option(config: pytest.Config, name: str) -> str | None:
    return config.getoption(name, default=None)


def host_dut_fixtures() -> types.ModuleType:
    """The fixtures, as a plugin object registered in pytest_configure: after pytest-embedded's, so this `dut` is
    the one tests get."""

    @pytest.fixture(scope="session")
    def host_build_cache(pytestconfig) -> Path:

        given = _option(pytestconfig, "host_build_cache")
        return Path(given) if given else default_host_build_cache()

    @pytest.fixture
    def host_firmware(request) -> HostFirmware:
        given = _option(request.config, "host_firmware")
        test_dir = Path(str(request.path)).parent
        default = test_dir.parent if test_dir.name == "test" else test_dir
        return find_host_firmware(Path(given) if given else default)

    @pytest.fixture(scope="session")
    def _host_session() -> Iterator[tuple[contextlib.ExitStack, dict]]:
        """What one session shares: specs, binaries and brokers by path, and the stack that stops the brokers."""
        with contextlib.ExitStack() as stack:
            yield stack, {}

    @pytest.fixture
    def host_spec(host_firmware, _host_session):

        _, shared = _host_session
        key = ("spec", host_firmware.spec_path)
        if key not in shared:
            shared[key] = load_spec(host_firmware.spec_path)
        return shared[key]

    @pytest.fixture
    def host_binary(request, host_firmware, host_build_cache, _host_session) -> Path:
        given = _option(request.config, "host_binary")
        if given:
            return Path(given)
        _, shared = _host_session
        key = ("binary", host_firmware.firmware_dir)
        if key not in shared:

            shared[key] = compile_firmware(host_firmware.firmware_dir, host_firmware.framework, host_build_cache)
        return shared[key]

    @pytest.fixture
    def host_broker(request, host_firmware, _host_session) -> BrokerAddress:
        """Where the device's connections go: --host-broker, or the generated broker, started once a session."""
        given = _option(request.config, "host_broker")
        if given:
            return parse_broker_address(given)
        stack, shared = _host_session
        key = ("broker", host_firmware.broker_dir)
        if key not in shared:

            running = stack.enter_context(
                running_broker(host_firmware.broker_dir, port=free_local_port(), bind_address=LOCAL_ADDRESS,
                               provision_port=free_local_port()))
            shared[key] = BrokerAddress(running.host, running.port, running.provision_port)
        return shared[key]

    @pytest.fixture
    def host_backend_environment(host_spec, host_broker, tmp_path, monkeypatch) -> dict:
        """The GEN_BROKER_* / GEN_CA / GEN_CLIENT_* / GEN_USERNAME variables test_device.py publishes its command
        with: the backend identity of the device's spec, at the broker the device talks to. Variables the user
        already set are kept."""
        if os.environ.get("GEN_BROKER_HOST"):
            return {}
        env = backend_environment(host_spec, host_broker, tmp_path / "backend")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env

    @pytest.fixture
    def dut(request, host_firmware, host_spec, host_binary, host_broker, host_backend_environment, tmp_path):
        from pytest_embedded.app import App  # the test extra, as above
        from pytest_embedded.dut import Dut

        device_id = host_firmware.device_id
        binaries = {device_id: host_binary}
        (run,) = plan_runs(host_spec, [device_id], binaries,
                           nvs_images(host_firmware.out_dir, read_manifest(host_firmware.out_dir)), host_broker,
                           flashes=flash_devices(host_spec, host_firmware.out_dir, [device_id], binaries))
        logfile = tmp_path / f"{device_id}.log"
        device = HostDutProcess(run, logfile)
        dut = Dut(pexpect_proc=device.pexpect_proc, msg_queue=device, app=App(str(host_firmware.firmware_dir)),
                  pexpect_logfile=str(logfile), test_case_name=request.node.name)
        try:
            yield dut
        finally:
            device.close()
            dut.close()

    plugin = types.ModuleType(f"{__name__}.fixtures")
    for name, value in locals().copy().items():
        setattr(plugin, name, value)
    return plugin


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gen host dut", "run a generated firmware's tests against its host build")
    group.addoption("--host-firmware", metavar="DIR", help="the firmware project (default: the test's project)")
    group.addoption("--host-binary", metavar="PATH", help="an already compiled host build of that project")
    group.addoption("--host-broker", metavar="HOST:PORT", help="a running broker (default: start OUT/broker)")
    group.addoption("--host-build-cache", metavar="DIR", help="the host build cache directory")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(host_dut_fixtures(), "gen-host-dut-fixtures")
