"""The generated sources of every example compile as the real build compiles them: with the framework's own
language standard, warnings and optimisation (generator.firmware.flags: ESP-IDF 5.5.3's build.cmake set with
-Werror, Arduino-ESP32 2.0.17's PlatformIO flags), gen's -Wall -Wextra on top, the project's sdkconfig.defaults and
build_flags, against the host runtime's device headers (the real declarations), without a single warning.

Each is compiled twice: for x86-64 Linux (what `gen simulate` runs) and for a 32-bit newlib target, where uint32_t
is `unsigned long` and size_t and long are 32 bits as on the ESP toolchains: C with Debian's riscv64-unknown-elf-gcc
for the ESP32-C3's ISA, C++ with arm-none-eabi-g++ (Debian has no RISC-V libstdc++; it is ILP32 newlib too)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_fakes import EXAMPLE_SPECS, example_devices, write_firmware_project
from generator.simulate.host_build import firmware_compile_flags
from generator.simulate.host_project import read_project
from generator.spec.model import Security

NEWLIB_INCLUDE = "/usr/include/newlib"   # Debian's libnewlib-dev
COMPILERS = {
    ("c", "x86-64"): ["gcc"],
    ("c++", "x86-64"): ["g++"],
    ("c", "rv32"): ["riscv64-unknown-elf-gcc", "-march=rv32imc_zicsr_zifencei", "-mabi=ilp32", "-isystem", NEWLIB_INCLUDE],
    ("c++", "rv32"): ["arm-none-eabi-g++"],   # the 32-bit C++ check (ILP32, newlib, libstdc++)
}
TARGETS = ("x86-64", "rv32")
MBEDTLS_HEADERS = Path("/usr/include/mbedtls")   # Debian's libmbedtls-dev (2.28): the mbedTLS API the firmware calls


@lru_cache(maxsize=1)
def mbedtls_only_include() -> str:
    """A folder holding only mbedtls/ (Debian's headers), for the 32-bit compilers: /usr/include itself is glibc's,
    which must not mix with newlib. On the device the headers come from the framework's mbedtls component."""
    folder = Path(tempfile.mkdtemp(prefix="mbedtls-include-"))
    (folder / "mbedtls").symlink_to(MBEDTLS_HEADERS)
    return str(folder)
INSTALL = "./scripts/setup installs gcc-riscv64-unknown-elf, libnewlib-dev, gcc-arm-none-eabi, libstdc++-arm-none-eabi-newlib"


def _require(target: str) -> None:
    for (_, name), command in COMPILERS.items():
        if name == target and shutil.which(command[0]) is None:
            pytest.fail(f"{command[0]} is missing: {INSTALL}")


def write_project(root: Path, device) -> Path:
    return write_firmware_project(root, device)


def compile_sources(root: Path, framework: str, target: str, *, drop_defines: tuple[str, ...] = ()) -> dict[str, str]:
    """Compiles every source of the project to an object (middle-end warnings such as -Wstringop-overread need
    code generation, -fsyntax-only misses them). Returns {source: compiler output}; empty output means clean."""
    _require(target)
    project = read_project(root, framework)
    if drop_defines:
        project = replace(project, defines=tuple(d for d in project.defines if d.split("=")[0] not in drop_defines))
    outputs = {}
    for source in project.sources:
        language = "c" if source.suffix == ".c" else "c++"
        extra = ["-isystem", mbedtls_only_include()] if target == "rv32" else []
        result = subprocess.run([*COMPILERS[(language, target)], *extra, *firmware_compile_flags(project, language), "-c",
                                 str(source), "-o", str(root / f"{source.stem}.o")],
                                capture_output=True, text=True, timeout=180)
        outputs[source.name] = result.stderr if result.returncode == 0 or result.stderr else "failed"
    return outputs


def assert_clean(outputs: dict[str, str]) -> None:
    dirty = {name: text for name, text in outputs.items() if text.strip()}
    assert not dirty, "\n".join(f"{name}:\n{text}" for name, text in dirty.items())


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_every_example_compiles_without_a_warning_under_the_framework_flags(spec, target, tmp_path):
    for index, device in enumerate(dict((d.target.name, d) for d in example_devices(spec.parent.name)).values()):
        assert_clean(compile_sources(write_project(tmp_path / str(index), device), device.framework, target))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("secrets", ["embed", "nvs"])
@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
@pytest.mark.parametrize("example", ["arduino-mtls", "espidf-mtls"])
def test_sources_compile_in_every_auth_and_secrets_mode(example, auth, secrets, target, tmp_path):
    device = replace(example_devices(example)[0], auth=auth, secrets=secrets)
    assert_clean(compile_sources(write_project(tmp_path, device), device.framework, target))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("protection", ["hmac", "flash_encryption"])
def test_a_device_that_makes_its_key_compiles_with_nvs_encryption_under_the_framework_flags(protection, target,
                                                                                          tmp_path):
    device = replace(example_devices("espidf-device-key")[0],
                     security=Security(nvs_encryption=True, nvs_key_protection=protection))
    root = write_project(tmp_path, device)
    assert "CONFIG_NVS_ENCRYPTION=y" in (root / "sdkconfig.defaults").read_text()
    assert_clean(compile_sources(root, device.framework, target))


@pytest.mark.parametrize("name", ["arduino-mtls", "espidf-mtls"])
def test_a_device_without_topics_still_compiles(name, tmp_path):
    device = replace(example_devices(name)[0], publish=(), subscribe=())
    assert_clean(compile_sources(write_project(tmp_path, device), device.framework, "rv32"))


@pytest.mark.parametrize("servers", [1, 3, 16])
def test_every_ntp_server_of_an_espidf_spec_fits_the_sntp_config_the_sdkconfig_sizes(servers, tmp_path):
    device = replace(example_devices("espidf-mtls")[0], ntp=tuple(f"ntp{i}.example.com" for i in range(servers)))
    root = write_project(tmp_path, device)
    assert f"CONFIG_LWIP_SNTP_MAX_SERVERS={servers}\n" in (root / "sdkconfig.defaults").read_text()
    assert_clean(compile_sources(root, "espidf", "rv32"))


def test_without_the_sdkconfig_setting_two_ntp_servers_fail_as_on_esp_idf(tmp_path):
    # esp_sntp_config_t.servers[CONFIG_LWIP_SNTP_MAX_SERVERS], Kconfig default 1: the real compile's error.
    device = example_devices("espidf-mtls")[0]
    assert len(device.ntp) == 2
    outputs = compile_sources(write_project(tmp_path, device), "espidf", "x86-64",
                              drop_defines=("CONFIG_LWIP_SNTP_MAX_SERVERS",))
    assert "excess elements in array initializer" in outputs["gen_link.c"]


@pytest.mark.parametrize("language", ["c", "c++"])
def test_the_32_bit_check_has_the_esp_toolchains_integer_types_and_format_checking(language, tmp_path):
    # On the ESP toolchains uint32_t is unsigned long: "%u" with one is a -Wformat warning there, never on x86-64.
    _require("rv32")
    source = tmp_path / ("probe.c" if language == "c" else "probe.cpp")
    source.write_text("#include <stdint.h>\n#include <stdio.h>\n#include <stddef.h>\n"
                      "_Static_assert(sizeof(long) == 4 && sizeof(size_t) == 4, \"ILP32\");\n"
                      "void show(uint32_t value) { printf(\"%u\\n\", value); }\n".replace(
                          "_Static_assert", "_Static_assert" if language == "c" else "static_assert"))
    result = subprocess.run([*COMPILERS[(language, "rv32")], "-Wall", "-c", str(source), "-o", str(tmp_path / "p.o")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "format '%u' expects argument of type 'unsigned int', but argument 2 has type 'uint32_t' " \
           "{aka 'long unsigned int'}" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_every_example_builds_and_links_against_the_host_runtime(spec, tmp_path):
    from generator.simulate.host_build import compile_firmware
    from generator.simulate.device_runs import default_host_build_cache

    device = example_devices(spec.parent.name)[0]
    binary = compile_firmware(write_project(tmp_path, device), device.framework, default_host_build_cache())
    assert binary.is_file()


MBEDTLS_3_6 = Path(__file__).resolve().parents[2] / ".venv" / "mbedtls-3.6" / "include"   # scripts/setup: Debian's 3.6
ESP_IDF_EXAMPLES = [spec for spec in EXAMPLE_SPECS if example_devices(spec.parent.name)[0].framework == "espidf"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("spec", ESP_IDF_EXAMPLES, ids=lambda p: p.parent.name)
def test_every_esp_idf_example_compiles_against_mbedtls_3_6_the_version_esp_idf_5_5_ships(spec, target, tmp_path):
    """ESP-IDF 5.5.3 builds with mbedTLS 3.6 (the system's headers are 2.28, Arduino-ESP32 2.0.17's): the key a
    device makes, its CSR and the OTA signature check take the 3.x branches (mbedtls_pk_parse_key with its RNG, ...)
    only here, under the framework's flags, warning-free."""
    if not (MBEDTLS_3_6 / "mbedtls" / "build_info.h").is_file():
        pytest.fail(f"no mbedTLS 3.6 headers in {MBEDTLS_3_6}: run ./scripts/setup")
    _require(target)
    device = example_devices(spec.parent.name)[0]
    root = write_project(tmp_path, device)
    project = read_project(root, "espidf")
    compiler = COMPILERS[("c", target)]
    version = subprocess.run([*compiler, "-isystem", str(MBEDTLS_3_6), *firmware_compile_flags(project, "c"), "-E",
                              "-dM", "-include", "mbedtls/build_info.h", "-x", "c", "/dev/null"],
                             capture_output=True, text=True, check=True).stdout
    assert "#define MBEDTLS_VERSION_NUMBER 0x0306" in version      # the 3.6 headers win over the system's 2.28
    outputs = {}
    for source in project.sources:
        result = subprocess.run([*compiler, "-isystem", str(MBEDTLS_3_6), *firmware_compile_flags(project, "c"), "-c",
                                 str(source), "-o", str(root / f"{source.stem}.o")],
                                capture_output=True, text=True, timeout=180)
        outputs[source.name] = result.stderr if result.returncode == 0 or result.stderr else "failed"
    assert_clean(outputs)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("secrets", ["embed", "nvs"])
@pytest.mark.parametrize("example", ["arduino-mtls", "espidf-mtls"])
def test_vars_of_every_type_compile_in_both_secrets_modes(example, secrets, target, tmp_path):
    from generator.spec.model import Var

    device = replace(example_devices(example)[0], secrets=secrets,
                     vars=(Var("room", 'north "house" ??/'), Var("soil_pin", 34), Var("lowest", -2**31),
                           Var("report_pressure", True)))
    assert_clean(compile_sources(write_project(tmp_path, device), device.framework, target))
