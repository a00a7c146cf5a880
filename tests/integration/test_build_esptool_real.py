"""The real esptool (5.x) merges real files at the offsets gen computes, checked byte by byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fake_tools import install_fake_tools
from fake_tools.out_layout import EXAMPLES_DIR, lay_out
from generator.firmware_build.plan import plan_build
from generator.firmware_build.run import run_build
from generator.spec.catalogue import load_catalogue
from generator.firmware_build.flashing import FlashSettings, bootloader_offset, merge_bin_args
from generator.output.manifest import read_manifest
from generator.spec import load_spec

REAL_ESPTOOL = shutil.which("esptool", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(REAL_ESPTOOL is None, reason="esptool is not installed beside this Python")


@pytest.mark.parametrize("chip", ["esp32", "esp32c3", "esp32s3"])
def test_real_esptool_merge_bin_puts_every_file_at_its_offset(tmp_path, chip):
    files = {
        bootloader_offset(chip): os.urandom(0x3000).replace(b"\xe9", b"\x00", 1),
        0x8000: os.urandom(0xC00),
        0x9000: os.urandom(0x5000),
        0x10000: os.urandom(0x12345),
    }
    images = []
    for offset, content in files.items():
        path = tmp_path / f"at-{offset:x}.bin"
        path.write_bytes(content)
        images.append((offset, path))
    output = tmp_path / "factory.bin"
    argv = [REAL_ESPTOOL, *merge_bin_args(chip, FlashSettings("dio", "40m", "4MB"), images, output)]
    completed = subprocess.run(argv, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr

    merged = output.read_bytes()
    assert len(merged) == 0x10000 + 0x12345
    expected = bytearray(b"\xff" * len(merged))
    for offset, content in files.items():
        expected[offset:offset + len(content)] = content
    assert merged == bytes(expected)


def test_a_build_with_the_real_esptool_gives_a_factory_image_matching_flash_json(tmp_path, monkeypatch):
    bin_dir = install_fake_tools(tmp_path / "fake-bin", tools=("pio",))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.path.dirname(REAL_ESPTOOL)}")
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(tmp_path / "pio-core"))
    spec_dir = tmp_path / "c3"
    spec_dir.mkdir()
    text = (EXAMPLES_DIR / "fleet-nvs" / "device.yaml").read_text().replace("target: esp32-arduino", "target: esp32c3-espidf")
    (spec_dir / "device.yaml").write_text(text.split("devices:")[0] + "devices:\n  - id: board-01\n")
    (spec_dir / "secrets.yaml").write_text((EXAMPLES_DIR / "fleet-nvs" / "secrets.yaml").read_text())
    spec = load_spec(spec_dir / "device.yaml")
    out = lay_out(spec, spec.default_out_dir)
    run_build(plan_build(out, read_manifest(out), load_catalogue()))

    artifacts = out / "artifacts" / "board-01"
    entry = json.loads((out / "manifest.json").read_text())["devices"][0]["artifacts"]
    factory = (artifacts / "factory.bin").read_bytes()
    for record in entry["files"]:
        if record["file"] == "nvs.bin":
            continue
        offset, content = int(record["offset"], 0), (artifacts / record["file"]).read_bytes()
        assert factory[offset:offset + len(content)] == content, record["file"]
    assert int({r["file"]: r["offset"] for r in entry["files"]}["bootloader.bin"], 0) == 0x0


def test_the_real_esptool_accepts_the_write_flash_arguments_of_flash_json(tmp_path, monkeypatch):
    """Run against a port that is not there: esptool gets as far as opening it, so every argument parsed."""
    from generator.core.errors import ToolError
    from generator.firmware_build.flashing import FlashImage, FlashLayout, SerialPort, esptool_flash_argv, run_flashing_tool

    layout = FlashLayout("board-01", "esp32", FlashSettings("dio", "40m", "4MB"),
                         (FlashImage(0x1000, "bootloader.bin"), FlashImage(0x8000, "partitions.bin"),
                          FlashImage(0x9000, "nvs.bin"), FlashImage(0x10000, "firmware.bin")))
    for image in layout.images:
        (tmp_path / image.file).write_bytes(os.urandom(256))
    monkeypatch.setattr("generator.firmware_build.flashing.serial_ports", lambda: [SerialPort("/dev/ttyUSB0", usb=True)])
    port = str(tmp_path / "ttyGONE")
    argv = esptool_flash_argv(REAL_ESPTOOL, layout, port=port, baud=460800)
    with pytest.raises(ToolError) as failed:
        run_flashing_tool(argv, port=port, cwd=tmp_path)
    assert f"serial port {port} disappeared" in str(failed.value)
    assert "/dev/ttyUSB0" in str(failed.value)
