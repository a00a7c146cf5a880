"""Which devices share a firmware image, and how PlatformIO is called for each image."""

from __future__ import annotations

import pytest

from fake_tools.out_layout import example_out, lay_out
from generator.firmware_build.plan import pio_metadata_args, pio_run_args, plan_build
from generator.firmware.fingerprint import firmware_fingerprint
from generator.spec.catalogue import load_catalogue
from generator.core.errors import UserError
from generator.output.manifest import read_manifest
from generator.spec import load_spec


def plan_for(out_dir, device_ids=None):
    return plan_build(out_dir, read_manifest(out_dir), load_catalogue(), device_ids)


def test_a_fleet_with_secrets_in_nvs_needs_one_image_per_target(tmp_path):
    spec, out = example_out("fleet-nvs", tmp_path)
    plan = plan_for(out)
    assert len(spec.devices) == 11
    assert sorted((image.env, len(image.devices)) for image in plan.images) == [
        ("esp32-arduino", 10), ("esp32c3-arduino", 1)]


def test_devices_with_secrets_embedded_each_get_their_own_image(tmp_path):
    spec_dir = tmp_path / "embedded"
    spec_dir.mkdir()
    from fake_tools.out_layout import EXAMPLES_DIR

    text = (EXAMPLES_DIR / "fleet-nvs" / "device.yaml").read_text().replace("secrets: nvs", "secrets: embed")
    (spec_dir / "device.yaml").write_text(text)
    (spec_dir / "secrets.yaml").write_text((EXAMPLES_DIR / "fleet-nvs" / "secrets.yaml").read_text())
    spec = load_spec(spec_dir / "device.yaml")
    plan = plan_for(lay_out(spec, spec.default_out_dir))
    assert len(plan.images) == 11
    assert all(len(image.devices) == 1 for image in plan.images)


def test_the_image_key_ignores_what_platformio_writes_into_the_project(tmp_path):
    _spec, out = example_out("fleet-nvs", tmp_path)
    project = out / "devices" / "sensor-01" / "firmware"
    before = firmware_fingerprint(project)
    (project / ".pio" / "build" / "esp32-arduino").mkdir(parents=True)
    (project / ".pio" / "build" / "esp32-arduino" / "firmware.bin").write_bytes(b"built")
    (project / "sdkconfig.esp32-arduino").write_text("CONFIG_X=y\n")
    assert firmware_fingerprint(project) == before
    (project / "sdkconfig.defaults").write_text("CONFIG_Y=y\n")
    assert firmware_fingerprint(project) != before


def test_a_user_edit_in_one_device_project_gives_that_device_its_own_image(tmp_path):
    _spec, out = example_out("fleet-nvs", tmp_path)
    (out / "devices" / "sensor-04" / "firmware" / "src" / "app_hooks.h").write_text("#pragma once\n// mine\n")
    groups = sorted([d.id for d in image.devices] for image in plan_for(out).images)
    assert ["sensor-04"] in groups
    assert len(groups) == 3


def test_platformio_builds_each_image_in_its_first_device_project_with_the_target_env(tmp_path):
    _spec, out = example_out("fleet-nvs", tmp_path)
    image = next(i for i in plan_for(out).images if i.env == "esp32-arduino")
    project = out / "devices" / "sensor-01" / "firmware"
    assert pio_run_args(image) == ["run", "-d", str(project), "-e", "esp32-arduino"]
    assert pio_metadata_args(image) == ["project", "metadata", "-d", str(project), "-e", "esp32-arduino", "--json-output"]


def test_building_only_some_devices_plans_only_their_images(tmp_path):
    _spec, out = example_out("fleet-nvs", tmp_path)
    plan = plan_for(out, ["sensor-c3"])
    assert [[d.id for d in image.devices] for image in plan.images] == [["sensor-c3"]]


def test_an_unknown_device_is_refused_naming_the_known_ones(tmp_path):
    _spec, out = example_out("fleet-nvs", tmp_path)
    with pytest.raises(UserError) as refused:
        plan_for(out, ["sensor-99"])
    assert "sensor-99" in str(refused.value) and "sensor-c3" in str(refused.value)


def test_the_generated_fleet_example_needs_two_images_for_its_eleven_devices(tmp_path):
    from fake_tools.out_layout import copy_example
    from generator.output.generate import generate

    spec = load_spec(copy_example("fleet-nvs", tmp_path / "fleet"))
    generate(spec, spec.default_out_dir)
    plan = plan_for(spec.default_out_dir)
    assert sorted((image.env, len(image.devices)) for image in plan.images) == [
        ("esp32-arduino", 10), ("esp32c3-arduino", 1)]


def test_generated_devices_with_embedded_secrets_each_get_their_own_image(tmp_path):
    from fake_tools.out_layout import EXAMPLES_DIR
    from generator.output.generate import generate

    spec_dir = tmp_path / "embedded"
    spec_dir.mkdir()
    text = (EXAMPLES_DIR / "fleet-nvs" / "device.yaml").read_text().replace("secrets: nvs", "secrets: embed")
    (spec_dir / "device.yaml").write_text(text.split("devices:")[0] + "devices:\n  - id: a-01\n  - id: a-02\n")
    (spec_dir / "secrets.yaml").write_text((EXAMPLES_DIR / "fleet-nvs" / "secrets.yaml").read_text())
    spec = load_spec(spec_dir / "device.yaml")
    generate(spec, spec.default_out_dir)
    assert sorted([d.id for d in image.devices] for image in plan_for(spec.default_out_dir).images) == [
        ["a-01"], ["a-02"]]


def test_building_one_device_of_a_fleet_builds_where_the_fleet_builds_its_image(tmp_path):
    _spec, out = example_out("fleet-nvs", tmp_path)
    plan = plan_for(out, ["sensor-07"])
    [image] = plan.images
    assert [d.id for d in image.devices] == ["sensor-07"]
    assert image.project_dir == out / "devices" / "sensor-01" / "firmware"
    assert image.key == next(i.key for i in plan_for(out).images if i.env == "esp32-arduino")
