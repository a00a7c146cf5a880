"""`gen run SPEC --device ID` (issue 26, item 2): build, flash and monitor one device through one port, with the
stand-in PlatformIO and esptool (tests/fake_tools) and a pseudo-terminal for the board's port."""

from __future__ import annotations

import os

import pytest

from fake_tools.fixtures import fake_tools, gen_cli  # noqa: F401  (fixtures)
from fake_tools.out_layout import copy_example


@pytest.fixture
def serial_port():
    controller, port_fd = os.openpty()
    yield os.ttyname(port_fd)
    os.close(controller)
    os.close(port_fd)


def steps(fake_tools) -> list[str]:
    named = []
    for call in fake_tools.calls():
        argv = call["argv"]
        if call["tool"] == "pio" and argv[:1] == ["run"]:
            named.append("build")
        elif call["tool"] == "esptool" and "write-flash" in argv:
            named.append("flash " + argv[argv.index("--port") + 1])
        elif call["tool"] == "pio" and argv[:2] == ["device", "monitor"]:
            named.append("monitor " + argv[argv.index("-p") + 1])
    return list(dict.fromkeys(named))


def test_gen_run_builds_flashes_and_monitors_the_device_through_the_one_port(tmp_path, fake_tools, serial_port,
                                                                             gen_cli):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    code, _stdout, err = gen_cli("run", spec_path, "--device", "sensor-05", "--port", serial_port)
    assert code == 0, err
    assert steps(fake_tools) == ["build", f"flash {serial_port}", f"monitor {serial_port}"]


def test_gen_run_no_build_flashes_the_last_build_without_building(tmp_path, fake_tools, serial_port, gen_cli):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    assert gen_cli("build", spec_path, "--device", "sensor-05")[0] == 0
    fake_tools.log.unlink()
    code, _stdout, err = gen_cli("run", spec_path, "--device", "sensor-05", "--port", serial_port, "--no-build")
    assert code == 0, err
    assert steps(fake_tools) == [f"flash {serial_port}", f"monitor {serial_port}"]


def test_gen_run_with_no_board_says_so_before_building(tmp_path, fake_tools, gen_cli, monkeypatch):
    monkeypatch.setattr("generator.firmware_build.flashing.serial_ports", lambda: [])
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    code, _stdout, err = gen_cli("run", spec_path, "--device", "sensor-05")
    assert code == 2 and "no USB serial port found" in err
    assert steps(fake_tools) == []
