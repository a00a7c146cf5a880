"""The spec's libraries:, build_flags: and vars: reach the build files each framework reads (platformio.ini,
main/idf_component.yml, CMakeLists.txt) and the app (gen_vars()->NAME), parsed back with the frameworks' own
formats; with secrets: nvs the vars live in each device's nvs.bin and the firmware projects stay one per image."""

from __future__ import annotations

import configparser
from dataclasses import replace
from pathlib import Path

import yaml

from firmware_fakes import credentials_for, example_devices
from generator.firmware.nvs_image import NVS_NAMESPACE, render_nvs_image, var_key
from generator.firmware.nvs_reader import read_nvs_image
from generator.firmware.app_layout import AppLayout
from generator.firmware.render import render_firmware
from generator.spec.model import Library, Var

VARS = (Var("room", "north house"), Var("soil_pin", 34), Var("report_pressure", True))


def arduino_ini(device, app: AppLayout = AppLayout()) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read_string(render_firmware(device, credentials_for(device), app=app).generated["platformio.ini"].decode())
    return parser


def test_a_registry_library_is_a_lib_deps_entry_after_the_catalogues_own():
    device = replace(example_devices("arduino-mtls")[0],
                     libraries=(Library("adafruit/Adafruit BME280 Library@^2.2.4"),))
    lib_deps = arduino_ini(device)["env:esp32-arduino"]["lib_deps"].split("\n")
    assert [line.strip() for line in lib_deps if line.strip()] == ["knolleary/PubSubClient@2.8",
                                                                  "adafruit/Adafruit BME280 Library@^2.2.4"]


def test_a_library_folder_of_the_user_is_a_symlink_entry_relative_to_the_project(tmp_path):
    folder = tmp_path / "shared" / "my_sensor"
    device = replace(example_devices("arduino-mtls")[0], libraries=(Library("../shared/my_sensor", folder),))
    lib_deps = arduino_ini(device)["env:esp32-arduino"]["lib_deps"]
    assert "my_sensor=symlink://../../../../../shared/my_sensor" in lib_deps


def test_build_flags_follow_the_catalogues_in_platformio_ini():
    device = replace(example_devices("arduino-mtls")[0], build_flags=("-DSENSOR_PIN=4", "-DGEN_LINK_OWN_MAIN"))
    flags = arduino_ini(device)["env:esp32-arduino"]["build_flags"].split()
    assert flags == ["-DCORE_DEBUG_LEVEL=3", "-DSENSOR_PIN=4", "-DGEN_LINK_OWN_MAIN"]


def test_esp_idf_libraries_are_component_manager_dependencies_of_the_main_component(tmp_path):
    device = replace(example_devices("espidf-mtls")[0], libraries=(
        Library("espressif/bme280@^0.1.0"), Library("espressif/led_strip"),
        Library("../shared/my_sensor", tmp_path / "shared" / "my_sensor")))
    manifest = render_firmware(device, credentials_for(device)).generated["main/idf_component.yml"]
    assert yaml.safe_load(manifest)["dependencies"] == {
        "espressif/bme280": "^0.1.0", "espressif/led_strip": "*",
        "my_sensor": {"path": "../../../../../../shared/my_sensor"}}


def test_esp_idf_build_flags_are_compile_options_of_the_whole_build():
    device = replace(example_devices("espidf-mtls")[0], build_flags=("-DSENSOR_PIN=4",))
    cmake = render_firmware(device, credentials_for(device)).generated["CMakeLists.txt"].decode()
    include = cmake.index("include($ENV{IDF_PATH}/tools/cmake/project.cmake)")
    option = cmake.index('idf_build_set_property(COMPILE_OPTIONS "-DSENSOR_PIN=4" APPEND)')
    assert include < option < cmake.index("project(firmware)")


def test_embedded_vars_are_compiled_in_with_the_devices_values():
    device = replace(example_devices("arduino-mtls")[0], vars=VARS)
    generated = render_firmware(device, credentials_for(device)).generated
    config = generated["include/gen_config.h"].decode()
    assert 'X(room, string, "north house")' in config and "X(soil_pin, int, 34)" in config
    assert "X(report_pressure, bool, true)" in config
    header = generated["include/gen_vars.h"].decode()
    assert "const char *room;" in header and "int32_t soil_pin;" in header and "bool report_pressure;" in header
    assert '#include "gen_vars.h"' in generated["include/app.h"].decode()


def test_nvs_vars_are_in_each_devices_nvs_image_as_text():
    device = replace(example_devices("fleet-nvs")[0], vars=VARS)
    values = read_nvs_image(render_nvs_image(device, credentials_for(device)))[NVS_NAMESPACE]
    assert [values[var_key(i)].text() for i in range(3)] == ["north house", "34", "1"]


def test_devices_with_their_own_vars_values_share_one_nvs_firmware_project():
    first, second = example_devices("fleet-nvs")[:2]
    projects = [render_firmware(replace(device, vars=(Var("room", room), Var("soil_pin", pin))),
                                credentials_for(device), spec_name="device.yaml").generated
                for device, room, pin in ((first, "north", 34), (second, "south", 35))]
    assert projects[0] == projects[1]
    assert "north" not in projects[0]["include/gen_config.h"].decode()
