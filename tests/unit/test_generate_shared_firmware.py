"""One firmware project per distinct image: a `secrets: nvs` fleet's devices share their image's project
(OUT/firmware/<image>/project), each device's firmware/ a link to it, and its own nvs.bin beside."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from generator.core.errors import UserError
from generator.output.generate import generate
from generator.output.layout import firmware_dir, shared_firmware_dir
from generator.output.manifest import read_manifest
from generator.spec import load_spec

EXAMPLES = Path(__file__).parent.parent.parent / "projects" / "examples"


def copy_example(name: str, tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLES / name, tmp_path / name, ignore=shutil.ignore_patterns("pki", "build"))
    return tmp_path / name / "device.yaml"


def edit_spec(spec_path: Path, old: str, new: str) -> None:
    text = spec_path.read_text()
    assert old in text, old
    spec_path.write_text(text.replace(old, new))


def test_a_secrets_nvs_fleet_writes_one_project_per_target_and_links_each_device_to_it(tmp_path):
    spec = load_spec(copy_example("fleet-nvs", tmp_path))
    generate(spec)
    out = spec.default_out_dir
    assert sorted(p.name for p in (out / "firmware").iterdir()) == ["esp32-arduino", "esp32c3-arduino"]
    for device in spec.devices:
        link = out / firmware_dir(device.id)
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (out / shared_firmware_dir(device.target.name)).resolve()
        assert (out / "devices" / device.id / "nvs.bin").is_file()
    generated = read_manifest(out).generated_files
    assert not any(path.startswith(f"{firmware_dir('sensor-01')}/") for path in generated)
    assert f"{shared_firmware_dir('esp32-arduino')}/platformio.ini" in generated


def test_devices_of_one_target_whose_images_differ_get_a_project_each_named_after_their_first_device(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    edit_spec(spec_path, "  - id: sensor-02\n", "  - id: sensor-02\n    keepalive: 60\n")
    spec = load_spec(spec_path)
    generate(spec)
    out = spec.default_out_dir
    assert sorted(p.name for p in (out / "firmware").iterdir()) == [
        "esp32-arduino-sensor-01", "esp32-arduino-sensor-02", "esp32c3-arduino"]
    assert (out / firmware_dir("sensor-03")).resolve() == (out / shared_firmware_dir("esp32-arduino-sensor-01")).resolve()


def test_a_fleet_switched_to_embedded_secrets_gets_a_project_per_device_and_the_shared_ones_go(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    generate(load_spec(spec_path))
    edit_spec(spec_path, "secrets: nvs", "secrets: embed")
    spec = load_spec(spec_path)
    generate(spec)
    out = spec.default_out_dir
    project = out / firmware_dir("sensor-01")
    assert not project.is_symlink() and (project / "include" / "gen_credentials.h").is_file()
    assert not (out / "firmware").exists() or not any((out / "firmware").iterdir())


def test_a_project_gen_wrote_per_device_becomes_the_link_and_platformios_outputs_in_it_go(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    edit_spec(spec_path, "secrets: nvs", "secrets: embed")
    generate(load_spec(spec_path))
    out = spec_path.parent / "build"
    (out / firmware_dir("sensor-01") / ".pio" / "build").mkdir(parents=True)
    edit_spec(spec_path, "secrets: embed", "secrets: nvs")
    result = generate(load_spec(spec_path))
    assert (out / firmware_dir("sensor-01")).is_symlink()
    assert f"{firmware_dir('sensor-01')}/" in result.removed


def test_a_file_of_someone_else_in_a_device_project_stops_the_switch_before_anything_is_written(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    edit_spec(spec_path, "secrets: nvs", "secrets: embed")
    generate(load_spec(spec_path))
    out = spec_path.parent / "build"
    mine = out / firmware_dir("sensor-01") / "notes.txt"
    mine.write_text("my notes\n")
    before = read_manifest(out).generated_files
    edit_spec(spec_path, "secrets: embed", "secrets: nvs")
    with pytest.raises(UserError) as failed:
        generate(load_spec(spec_path))
    assert "notes.txt" in str(failed.value) and "nothing was changed" in failed.value.hint
    assert mine.read_text() == "my notes\n" and read_manifest(out).generated_files == before
    assert not (out / "firmware").exists()
