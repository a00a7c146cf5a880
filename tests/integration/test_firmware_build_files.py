"""The generated build files, read by the build systems' own parsers: CMake itself configures the ESP-IDF project
(against a stand-in of ESP-IDF's project.cmake, tests/data/idf_cmake_stub, which finds components as ESP-IDF does
and records what each declares), and PlatformIO's own config parser reads platformio.ini. A multi-file app with a
library of its own, and the spec's libraries: and build_flags:, in both flavours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_fakes import example_devices, write_firmware_project
from generator.spec.model import Library

DATA = Path(__file__).parent.parent / "data"
PIO = Path(sys.executable).with_name("pio")


def configure_with_cmake(firmware: Path, work: Path) -> list[dict]:
    """CMake's configure run of the ESP-IDF project; what the project and each component declared."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake is missing: ./scripts/setup installs it")
    report = work / "report.jsonl"
    result = subprocess.run(["cmake", "-S", str(firmware), "-B", str(work / "cmake-build"), f"-DGEN_IDF_REPORT={report}"],
                            env={**os.environ, "IDF_PATH": str(DATA / "idf_cmake_stub")},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in report.read_text().splitlines()]


def project_with_app(tmp_path: Path, framework: str, **changes) -> tuple[Path, Path]:
    """The multi-file app of tests/data (src/, its own library), a shared library beside the project, generated."""
    app = tmp_path / "greenhouse"
    shutil.copytree(DATA / "multi_file_app" / framework, app)
    shared = tmp_path / "shared" / "calibration"
    (shared / "include").mkdir(parents=True)
    (shared / "CMakeLists.txt").write_text('idf_component_register(SRCS "calibration.c" INCLUDE_DIRS "include")\n')
    (shared / "calibration.c").write_text("int calibration_offset(void) { return 3; }\n")
    device = replace(example_devices("arduino-mtls" if framework == "arduino" else "espidf-mtls")[0],
                     libraries=(Library("../shared/calibration", shared),), **changes)
    return app, write_firmware_project(app, device)


def test_cmake_finds_the_apps_files_its_components_and_gens_in_the_esp_idf_project(tmp_path):
    app, firmware = project_with_app(tmp_path, "espidf", build_flags=("-DSENSOR_PIN=4",))
    project, *components = configure_with_cmake(firmware, tmp_path)
    by_name = {c["component"]: c for c in components}
    assert set(by_name) == {"main", "gen_link", "gen_config", "soil_moisture"}
    assert sorted(Path(s).name for s in by_name["main"]["srcs"]) == ["app.c", "readings.c"]   # app.cpp left out
    assert by_name["main"]["include_dirs"] == [str((app / "src").resolve())]
    assert by_name["main"]["requires"] == []            # main requires every component, as ESP-IDF's main does
    assert by_name["gen_link"]["whole_archive"] and "gen_config" in by_name["gen_link"]["requires"]
    assert sorted(Path(s).name for s in by_name["gen_link"]["srcs"]) == ["device_key.c", "gen_link.c", "log_publish.c",
                                                                        "ota_update.c", "provisioning.c"]
    assert project["compile_options"] == ["-DSENSOR_PIN=4"]


def test_the_main_components_manifest_points_at_the_shared_component_cmake_sees(tmp_path):
    import yaml

    app, firmware = project_with_app(tmp_path, "espidf")
    manifest = yaml.safe_load((firmware / "main" / "idf_component.yml").read_text())
    path = manifest["dependencies"]["calibration"]["path"]
    assert (firmware / "main" / path).resolve() == (tmp_path / "shared" / "calibration").resolve()


def test_platformio_reads_the_arduino_project_with_the_apps_folder_and_every_library(tmp_path):
    app, firmware = project_with_app(tmp_path, "arduino", build_flags=("-DSENSOR_PIN=4",))
    result = subprocess.run([str(PIO), "project", "config", "-d", str(firmware), "--json-output"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sections = {name: dict(options) for name, options in json.loads(result.stdout)}
    assert (firmware / sections["platformio"]["src_dir"]).resolve() == (app / "src").resolve()
    env = sections["env:esp32-arduino"]
    assert env["lib_deps"] == ["knolleary/PubSubClient@2.8",
                               "soil_moisture=symlink://../../../../lib/soil_moisture",
                               "calibration=symlink://../../../../../shared/calibration"]
    assert env["build_flags"] == ["-DCORE_DEBUG_LEVEL=3", "-DSENSOR_PIN=4"]
    assert env["build_src_filter"] == ["+<*> -<app.c>"]
    for entry in env["lib_deps"][1:]:
        assert (firmware / entry.split("symlink://")[1]).is_dir()


@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_a_library_folder_named_in_libraries_is_compiled_by_the_host_build_too(framework, tmp_path):
    from generator.simulate.host_project import read_project

    _app, firmware = project_with_app(tmp_path, framework)
    sources = read_project(firmware, framework).sources
    assert (tmp_path / "shared" / "calibration" / "calibration.c").resolve() in sources
