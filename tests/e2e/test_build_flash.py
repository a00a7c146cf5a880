"""`gen flash` and `gen monitor`: the esptool / PlatformIO command lines, and the serial port checks.
A pseudo-terminal stands in for the board's port (it exists and can be locked like /dev/ttyUSB0)."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from fake_tools.fixtures import fake_tools, gen_cli  # noqa: F401  (fixtures)
from fake_tools.out_layout import copy_example, lay_out
from generator.firmware_build.plan import plan_build
from generator.firmware_build.run import run_build
from generator.spec.catalogue import load_catalogue
from generator.firmware_build.flashing import SerialPort
from generator.output.manifest import read_manifest
from generator.spec import load_spec


@pytest.fixture
def built_fleet(tmp_path, fake_tools):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    spec = load_spec(spec_path)
    out = lay_out(spec, spec.default_out_dir)
    run_build(plan_build(out, read_manifest(out), load_catalogue()))
    return spec_path, out


@pytest.fixture
def serial_port():
    """A pseudo-terminal: a port that exists. Yields (its path, the fd of the other end)."""
    controller, port_fd = os.openpty()
    yield os.ttyname(port_fd), port_fd
    os.close(controller)
    os.close(port_fd)


@pytest.fixture
def visible_ports(monkeypatch):
    """What pyserial would list; set `visible_ports[:] = [SerialPort(...), ...]`."""
    ports: list[SerialPort] = []
    monkeypatch.setattr("generator.firmware_build.flashing.serial_ports", lambda: list(ports))
    return ports


def usb(device: str) -> SerialPort:
    return SerialPort(device, usb=True, description="CP2102 USB to UART Bridge Controller")


def test_flash_runs_esptool_with_the_arguments_of_flash_json_and_the_port(built_fleet, fake_tools, serial_port, gen_cli):
    spec_path, out = built_fleet
    port, _ = serial_port
    code, stdout, err = gen_cli("flash", spec_path, "--device", "sensor-05", "--port", port)
    assert code == 0, err
    flash = next(c for c in fake_tools.calls("esptool") if "write-flash" in c["argv"])
    layout = json.loads((out / "artifacts" / "sensor-05" / "flash.json").read_text())
    assert flash["argv"] == ["--port", port, "--baud", "460800", *layout["esptool_args"]]
    assert flash["cwd"] == str(out / "artifacts" / "sensor-05")
    assert "0x9000" in flash["argv"] and "nvs.bin" in flash["argv"]
    assert f"Wrote {0x5000} bytes at 0x00009000." in stdout


def test_flash_uses_the_only_port_present_when_none_is_named(built_fleet, fake_tools, serial_port, visible_ports, gen_cli):
    spec_path, _out = built_fleet
    visible_ports[:] = [SerialPort("/dev/ttyS0", usb=False), usb(serial_port[0])]
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-c3")
    assert code == 0, err
    flash = next(c for c in fake_tools.calls("esptool") if "write-flash" in c["argv"])
    assert flash["argv"][:2] == ["--port", serial_port[0]] and "esp32c3" in flash["argv"]


def test_flash_refuses_a_port_that_does_not_exist_and_lists_those_that_do(built_fleet, fake_tools, visible_ports, gen_cli):
    spec_path, _out = built_fleet
    visible_ports[:] = [usb("/dev/ttyUSB1"), SerialPort("/dev/ttyACM0", usb=True)]
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01", "--port", "/dev/ttyUSB9")
    assert code == 2
    assert "serial port /dev/ttyUSB9 does not exist" in err
    assert "/dev/ttyUSB1 (CP2102 USB to UART Bridge Controller), /dev/ttyACM0" in err and "Traceback" not in err
    assert not fake_tools.calls("esptool")[2:]  # only the build's two merge-bin calls


def test_flash_with_no_serial_port_at_all_says_to_plug_the_board_in(built_fleet, fake_tools, visible_ports, gen_cli):
    spec_path, _out = built_fleet
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01")
    assert code == 2
    assert "no USB serial port found" in err and "plug it in" in err


def test_flash_never_picks_a_legacy_uart_such_as_ttyS0(built_fleet, fake_tools, visible_ports, gen_cli):
    spec_path, _out = built_fleet
    visible_ports[:] = [SerialPort("/dev/ttyS0", usb=False, description="ttyS0")]
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01")
    assert code == 2, err
    assert "no USB serial port found" in err and "only /dev/ttyS0 (ttyS0), which are not USB" in err
    assert not [c for c in fake_tools.calls("esptool") if "write-flash" in c["argv"]]


def test_flash_with_several_usb_boards_lists_them_and_asks_which(built_fleet, fake_tools, visible_ports, gen_cli):
    spec_path, _out = built_fleet
    visible_ports[:] = [usb("/dev/ttyUSB0"), usb("/dev/ttyUSB1")]
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01")
    assert code == 2
    assert "several USB serial ports" in err and "/dev/ttyUSB0" in err and "/dev/ttyUSB1" in err and "--port" in err


def test_flash_refuses_a_port_another_program_holds(built_fleet, fake_tools, serial_port, gen_cli):
    spec_path, _out = built_fleet
    port, port_fd = serial_port
    fcntl.flock(port_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what pyserial (esptool, pio device monitor) does
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01", "--port", port)
    assert code == 2
    assert f"serial port {port} is busy" in err and "close that program" in err
    assert not [c for c in fake_tools.calls("esptool") if "write-flash" in c["argv"]]


def test_esptool_finding_the_port_busy_gives_the_same_busy_message(built_fleet, fake_tools, serial_port, gen_cli, monkeypatch):
    spec_path, _out = built_fleet
    monkeypatch.setenv("FAKE_ESPTOOL_FAIL", "busy")
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01", "--port", serial_port[0])
    assert code == 2 and f"serial port {serial_port[0]} is busy" in err


def test_esptool_getting_no_answer_from_the_chip_says_what_to_check(built_fleet, fake_tools, serial_port, gen_cli, monkeypatch):
    spec_path, _out = built_fleet
    monkeypatch.setenv("FAKE_ESPTOOL_FAIL", "no-connect")
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01", "--port", serial_port[0])
    assert code == 1
    assert "no ESP32 bootloader answered" in err and "hold BOOT" in err and "Traceback" not in err


def test_flash_with_platformio_uploads_then_writes_nvs_bin_at_its_offset(built_fleet, fake_tools, serial_port, gen_cli):
    spec_path, out = built_fleet
    port = serial_port[0]
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-02", "--port", port, "--method", "pio")
    assert code == 0, err
    upload = [c["argv"] for c in fake_tools.calls("pio") if "upload" in c["argv"]]
    assert upload == [["run", "-d", str(out / "devices" / "sensor-01" / "firmware"), "-e", "esp32-arduino",
                       "-t", "upload", "--upload-port", port]]
    nvs = [c["argv"] for c in fake_tools.calls("esptool") if "write-flash" in c["argv"]]
    assert nvs == [["--port", port, "--baud", "460800", "--chip", "esp32", "write-flash", "0x9000", "nvs.bin"]]


def test_flash_before_build_says_to_build_first(tmp_path, fake_tools, serial_port, gen_cli):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    spec = load_spec(spec_path)
    lay_out(spec, spec.default_out_dir)
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-01", "--port", serial_port[0])
    assert code == 2 and "has not been built yet" in err and "gen build" in err


def test_monitor_runs_pio_device_monitor_at_the_catalogue_baud_with_the_exception_decoder(
        built_fleet, fake_tools, serial_port, gen_cli):
    spec_path, out = built_fleet
    code, _stdout, err = gen_cli("monitor", spec_path, "--device", "sensor-04", "--port", serial_port[0])
    assert code == 0, err
    monitor = [c["argv"] for c in fake_tools.calls("pio") if c["argv"][:2] == ["device", "monitor"]]
    speed = load_catalogue()["esp32-arduino"].option("monitor_speed")
    assert monitor == [["device", "monitor", "-p", serial_port[0], "-b", speed, "-f", "esp32_exception_decoder",
                        "-d", str(out / "devices" / "sensor-01" / "firmware"), "-e", "esp32-arduino"]]


def test_monitor_needs_only_the_port_for_a_board_flashed_elsewhere(tmp_path, fake_tools, serial_port, gen_cli):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    code, _stdout, err = gen_cli("monitor", spec_path, "--device", "sensor-04", "--port", serial_port[0])
    assert code == 0, err
    monitor = [c["argv"] for c in fake_tools.calls("pio") if c["argv"][:2] == ["device", "monitor"]]
    speed = load_catalogue()["esp32-arduino"].option("monitor_speed")
    assert monitor == [["device", "monitor", "-p", serial_port[0], "-b", speed]]


def test_monitor_refuses_a_busy_port(built_fleet, fake_tools, serial_port, gen_cli):
    spec_path, _out = built_fleet
    port, port_fd = serial_port
    fcntl.flock(port_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    code, _stdout, err = gen_cli("monitor", spec_path, "--device", "sensor-04", "--port", port)
    assert code == 2 and "is busy" in err


def test_flash_after_an_unchanged_generate_still_finds_the_build(tmp_path, fake_tools, serial_port, gen_cli):
    """The broker README asks for a weekly `gen generate` (it re-signs the CRL): that must not lose the build."""
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    assert gen_cli("build", spec_path)[0] == 0
    code, _stdout, err = gen_cli("generate", spec_path)
    assert code == 0, err
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-03", "--port", serial_port[0])
    assert code == 0, err


def test_flash_after_the_users_app_code_changed_asks_for_a_new_build(tmp_path, fake_tools, serial_port, gen_cli):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    assert gen_cli("build", spec_path)[0] == 0
    app = spec_path.parent / "src" / "app.cpp"
    app.write_text(app.read_text() + "\n// changed\n")
    assert gen_cli("generate", spec_path)[0] == 0
    code, _stdout, err = gen_cli("flash", spec_path, "--device", "sensor-03", "--port", serial_port[0])
    assert code == 2 and "has not been built yet" in err
