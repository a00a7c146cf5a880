"""The fixtures of the host-DUT plugin (generator.simulate.pytest_host_dut registers this module in
pytest_configure): the generated firmware's tests get a `dut` that is the host build of their project, running
against the generated broker. What one session shares (specs, binaries, brokers) is kept by path."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import pytest

from generator.broker.runner import running_broker
from generator.output.manifest import read_manifest
from generator.simulate.device_runs import (
    LOCAL_ADDRESS,
    BrokerAddress,
    default_host_build_cache,
    flash_devices,
    nvs_images,
    parse_broker_address,
    plan_runs,
)
from generator.simulate.host_build import compile_firmware
from generator.simulate.pytest_host_dut import (
    HostDutProcess,
    HostFirmware,
    backend_environment,
    find_host_firmware,
    plugin_option,
)
from generator.simulate.run import free_local_port
from generator.spec import load_spec


@pytest.fixture(scope="session")
def host_build_cache(pytestconfig) -> Path:
    given = plugin_option(pytestconfig, "host_build_cache")
    return Path(given) if given else default_host_build_cache()


@pytest.fixture
def host_firmware(request) -> HostFirmware:
    given = plugin_option(request.config, "host_firmware")
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
    given = plugin_option(request.config, "host_binary")
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
    given = plugin_option(request.config, "host_broker")
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
