"""`gen build` with the stand-in PlatformIO and esptool: how often they run, what lands in OUT/artifacts/<id>/,
and what OUT/manifest.json records. These prove how gen calls the tools, never that firmware builds."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from fake_tools.fixtures import fake_tools, gen_cli  # noqa: F401  (fixtures)
from fake_tools.out_layout import NOT_AFTER, example_out
from generator.firmware_build.plan import plan_build
from generator.firmware_build.run import run_build
from generator.spec.catalogue import load_catalogue
from generator.output.manifest import read_manifest


def build(out_dir, device_ids=None):
    plan = plan_build(out_dir, read_manifest(out_dir), load_catalogue(), device_ids)
    return run_build(plan)


def manifest_json(out_dir):
    """OUT/manifest.json as the file holds it (the contract other tools read)."""
    return json.loads((out_dir / "manifest.json").read_text())


def devices_by_id(out_dir):
    return {entry["id"]: entry for entry in manifest_json(out_dir)["devices"]}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_building_the_fleet_runs_platformio_once_per_target_not_once_per_device(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    result = build(out)
    runs = fake_tools.pio_runs()
    assert sorted(run[-1] for run in runs) == ["esp32-arduino", "esp32c3-arduino"]
    assert len(result.artifacts) == 11
    assert result.timer.platformio_builds == 2
    assert len([c for c in fake_tools.calls("esptool") if "merge-bin" in c["argv"]]) == 2


def test_every_device_gets_the_images_its_nvs_bin_and_a_flash_json(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    artifacts = out / "artifacts" / "sensor-02"
    assert sorted(p.name for p in artifacts.iterdir()) == [
        "boot_app0.bin", "bootloader.bin", "factory.bin", "firmware.bin", "flash.json", "nvs.bin", "partitions.bin"]
    assert (artifacts / "nvs.bin").read_bytes() == (out / "devices" / "sensor-02" / "nvs.bin").read_bytes()
    assert (artifacts / "nvs.bin").stat().st_mode & 0o777 == 0o600
    flash = json.loads((artifacts / "flash.json").read_text())
    assert flash["esptool_args"] == [
        "--chip", "esp32", "write-flash", "--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "4MB",
        "0x1000", "bootloader.bin", "0x8000", "partitions.bin", "0x9000", "nvs.bin", "0xe000", "boot_app0.bin",
        "0x10000", "firmware.bin"]
    assert flash["factory"] == {"offset": "0x0", "file": "factory.bin"}


def test_devices_that_share_an_image_share_its_files_and_differ_only_in_nvs_bin(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    one, other = out / "artifacts" / "sensor-01", out / "artifacts" / "sensor-07"
    for name in ("bootloader.bin", "partitions.bin", "boot_app0.bin", "firmware.bin", "factory.bin"):
        assert os.path.samefile(one / name, other / name), name
    assert (one / "nvs.bin").read_bytes() != (other / "nvs.bin").read_bytes()
    c3 = out / "artifacts" / "sensor-c3"
    assert sha256(c3 / "firmware.bin") != sha256(one / "firmware.bin")


@pytest.mark.parametrize("target, chip, bootloader_at", [
    ("esp32-arduino", "esp32", 0x1000),
    ("esp32c3-arduino", "esp32c3", 0x0),
    ("esp32s3-espidf", "esp32s3", 0x0),
    ("esp32-espidf", "esp32", 0x1000),
])
def test_the_factory_image_holds_each_file_at_its_offset_for_the_chip(tmp_path, fake_tools, target, chip, bootloader_at):
    from fake_tools.out_layout import EXAMPLES_DIR, lay_out
    from generator.spec import load_spec

    spec_dir = tmp_path / "one"
    spec_dir.mkdir()
    text = (EXAMPLES_DIR / "fleet-nvs" / "device.yaml").read_text().replace("target: esp32-arduino", f"target: {target}")
    text = text.split("devices:")[0] + "devices:\n  - id: board-01\n"
    (spec_dir / "device.yaml").write_text(text)
    (spec_dir / "secrets.yaml").write_text((EXAMPLES_DIR / "fleet-nvs" / "secrets.yaml").read_text())
    spec = load_spec(spec_dir / "device.yaml")
    out = lay_out(spec, spec.default_out_dir)
    build(out)

    merge = next(c["argv"] for c in fake_tools.calls("esptool") if "merge-bin" in c["argv"])
    assert merge[:2] == ["--chip", chip]
    assert merge[merge.index("--flash-mode"):merge.index("--flash-mode") + 6] == [
        "--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "4MB"]
    artifacts = out / "artifacts" / "board-01"
    flash = json.loads((artifacts / "flash.json").read_text())
    offsets = {image["file"]: int(image["offset"], 0) for image in flash["images"]}
    assert offsets["bootloader.bin"] == bootloader_at
    assert offsets["partitions.bin"] == 0x8000 and offsets["firmware.bin"] == 0x10000
    factory = (artifacts / "factory.bin").read_bytes()
    for name, offset in offsets.items():
        if name == "nvs.bin":
            continue  # the factory image is the shared image; nvs.bin is flashed on top of it
        content = (artifacts / name).read_bytes()
        assert factory[offset:offset + len(content)] == content, name


def test_the_manifest_records_each_artifact_with_hash_size_versions_and_the_device_cert(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    devices = devices_by_id(out)
    entry = devices["sensor-03"]["artifacts"]
    assert entry["dir"] == "artifacts/sensor-03" and entry["flash"] == "artifacts/sensor-03/flash.json"
    assert entry["target"] == "esp32-arduino" and entry["chip"] == "esp32"
    assert entry["platform"] == load_catalogue()["esp32-arduino"].platform
    assert entry["framework"] == "arduino" and entry["framework_version"] == "3.20017.241212+sha.dcc1105b"
    for record in entry["files"] + [entry["factory"]]:
        path = out / entry["dir"] / record["file"]
        assert record["sha256"] == sha256(path) and record["size"] == path.stat().st_size
    assert {r["file"]: r["offset"] for r in entry["files"]}["nvs.bin"] == "0x9000"
    assert entry["cert"] == {"serial": devices["sensor-03"]["cert_serial"], "not_after": NOT_AFTER.isoformat()}


def test_the_manifest_shows_the_image_hash_the_fleet_shares(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    manifest = manifest_json(out)
    hashes = {d["id"]: d["artifacts"]["image"] for d in manifest["devices"]}
    assert len({hashes[f"sensor-{n:02d}"] for n in range(1, 11)}) == 1
    assert hashes["sensor-01"] == sha256(out / "artifacts" / "sensor-01" / "firmware.bin")
    images = {image["target"]: image for image in manifest["images"]}
    assert images["esp32-arduino"]["sha256"] == hashes["sensor-01"]
    assert len(images["esp32-arduino"]["devices"]) == 10 and images["esp32c3-arduino"]["devices"] == ["sensor-c3"]


def test_the_manifest_holds_no_secret(tmp_path, fake_tools):
    spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    text = (out / "manifest.json").read_text()
    assert spec.devices[0].wifi.password not in text
    assert "PRIVATE KEY" not in text


def test_building_one_device_keeps_what_an_earlier_build_recorded_for_the_others(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    before = devices_by_id(out)
    build(out, ["sensor-c3"])
    after = devices_by_id(out)
    assert after["sensor-01"]["artifacts"] == before["sensor-01"]["artifacts"]
    assert len(fake_tools.pio_runs()) == 3
    images = {image["target"]: image for image in manifest_json(out)["images"]}
    assert len(images["esp32-arduino"]["devices"]) == 10 and images["esp32c3-arduino"]["devices"] == ["sensor-c3"]


def test_gen_build_generates_builds_and_says_where_the_artifacts_are(tmp_path, fake_tools, gen_cli):
    from fake_tools.out_layout import copy_example

    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    code, out, err = gen_cli("build", spec_path)
    assert code == 0, err
    assert "built 2 images for 11 devices" in out
    assert (spec_path.parent / "build" / "artifacts" / "sensor-10" / "flash.json").is_file()
    assert (spec_path.parent / "build" / "logs").is_dir()


def test_gen_build_of_one_device_runs_only_its_image(tmp_path, fake_tools, gen_cli):
    from fake_tools.out_layout import copy_example

    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    code, out, err = gen_cli("build", spec_path, "--device", "sensor-c3", "--out", tmp_path / "out")
    assert code == 0, err
    assert [run[-1] for run in fake_tools.pio_runs()] == ["esp32c3-arduino"]
    assert "built 1 image for 1 device" in out


def test_an_image_no_device_uses_any_more_is_removed(tmp_path, fake_tools):
    _spec, out = example_out("fleet-nvs", tmp_path)
    build(out)
    c3_before = manifest_json(out)["images"][1]["dir"]
    (out / "devices" / "sensor-c3" / "firmware" / "src" / "app_hooks.h").write_text("#pragma once\n// changed\n")
    build(out)
    dirs = sorted(p.name for p in (out / "images").iterdir())
    assert len(dirs) == 2 and (out / c3_before).name not in dirs
    assert sorted(image["dir"].split("/")[-1] for image in manifest_json(out)["images"]) == dirs


def test_the_progress_display_has_one_line_per_image_naming_its_devices(tmp_path, fake_tools):
    import io

    from rich.console import Console

    from generator.cli.build_commands import BuildProgress

    _spec, out = example_out("fleet-nvs", tmp_path)
    screen = io.StringIO()
    plan = plan_build(out, read_manifest(out), load_catalogue())
    with BuildProgress(plan, Console(file=screen, width=120)) as progress:
        run_build(plan, on_progress=progress.update)
    lines = [line for line in screen.getvalue().splitlines() if line.strip()]
    assert len(lines) == 2
    assert "built" in lines[0] and "esp32-arduino (sensor-01, sensor-02, sensor-03 and 7 more)" in lines[0]
    assert "built" in lines[1] and "esp32c3-arduino (sensor-c3)" in lines[1]
