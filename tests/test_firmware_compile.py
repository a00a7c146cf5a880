"""The generated sources of every example compile without a warning (-Wall -Wextra -Werror) against the host
runtime's device headers, which declare the real ESP32 APIs with the real signatures."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_fakes import EXAMPLE_SPECS, example_devices, write_firmware_project
from generator.paths import HOST_RUNTIME_DIR

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
INCLUDES = [f"-I{HOST_RUNTIME_DIR / part}" for part in ("arduino", "idf", "common")]

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


def write_project(root: Path, device) -> Path:
    return write_firmware_project(root, device)


def check_sources(root: Path, framework: str) -> None:
    if framework == "arduino":
        command = ["g++", "-std=gnu++11", "-fno-rtti"]  # as Arduino-ESP32 2.0.x compiles a sketch
        sources = ["main.cpp", "app.cpp"]
    else:
        command = ["gcc", "-std=gnu11"]
        sources = ["main.c", "app.c"]
    for source in sources:
        result = subprocess.run(command + WARNINGS + ["-fsyntax-only"] + INCLUDES
                                + [f"-I{root / 'src'}", str(root / "src" / source)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{source}:\n{result.stderr}"


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_generated_sources_compile_without_warnings(spec, tmp_path):
    device = example_devices(spec.parent.name)[0]
    check_sources(write_project(tmp_path, device), device.framework)


@pytest.mark.parametrize("secrets", ["embed", "nvs"])
@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_espidf_sources_compile_in_every_auth_and_secrets_mode(auth, secrets, tmp_path):
    from dataclasses import replace

    device = replace(example_devices("espidf-mtls")[0], auth=auth, secrets=secrets)
    check_sources(write_project(tmp_path, device), "espidf")


@pytest.mark.parametrize("secrets", ["embed", "nvs"])
@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_arduino_sources_compile_in_every_auth_and_secrets_mode(auth, secrets, tmp_path):
    from dataclasses import replace

    device = replace(example_devices("arduino-mtls")[0], auth=auth, secrets=secrets)
    check_sources(write_project(tmp_path, device), "arduino")


@pytest.mark.parametrize("name", ["arduino-mtls", "espidf-mtls"])
def test_a_device_without_topics_still_compiles(name, tmp_path):
    from dataclasses import replace

    device = replace(example_devices(name)[0], publish=(), subscribe=())
    check_sources(write_project(tmp_path, device), device.framework)


@pytest.mark.slow
@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_every_example_builds_and_links_against_the_host_runtime(spec, tmp_path):
    from generator.host_build import compile_firmware
    from generator.simulate import default_host_build_cache

    device = example_devices(spec.parent.name)[0]
    binary = compile_firmware(write_project(tmp_path, device), device.framework, default_host_build_cache())
    assert binary.is_file()
