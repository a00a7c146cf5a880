"""A multi-file app with a library of its own builds and links in both flavours (the host build: the framework's
own flags, gen's -Wall -Wextra, any warning fails), the other framework's starter (an #error) left out; a registry
library the host build cannot have is named in one error with the way to keep it out of the host build."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from firmware_fakes import EXAMPLE, ROOT, example_devices, multi_file_project, write_firmware_project
from generator.core.errors import UserError
from generator.simulate.host_build import compile_firmware
from generator.spec.model import Library


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_a_multi_file_app_with_its_own_library_builds_and_links(framework, tmp_path):
    firmware = multi_file_project(tmp_path, framework)
    binary = compile_firmware(firmware, framework, tmp_path / "cache")
    assert binary.is_file()


@pytest.mark.slow
@pytest.mark.parametrize("framework, library, header", [
    ("arduino", "adafruit/Adafruit BME280 Library@^2.2.4", "Adafruit_BME280.h"),
    ("espidf", "espressif/bme280@^0.1.0", "bme280.h"),
])
def test_a_registry_library_the_host_build_cannot_have_is_named_with_the_way_to_keep_it_out(
        framework, library, header, tmp_path):
    project = tmp_path / "greenhouse"
    source = project / "src" / ("climate.cpp" if framework == "arduino" else "climate.c")
    source.parent.mkdir(parents=True)
    source.write_text(f"#include <{header}>\n")
    device = replace(example_devices(EXAMPLE[framework])[0], libraries=(Library(library),))
    firmware = write_firmware_project(project, device)
    with pytest.raises(UserError) as failed:
        compile_firmware(firmware, framework, tmp_path / "cache")
    message = str(failed.value)
    assert f"<{header}> ({source}:1)" in message and library in message
    assert "#ifndef GEN_HOST_BUILD" in failed.value.hint and "error:" not in message
    tutorial = re.search(r"the tutorial in (projects/examples/[\w-]+)", failed.value.hint)[1]
    assert (ROOT / tutorial / "README.md").is_file() and framework in (ROOT / tutorial / "device.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_an_app_that_owns_the_entry_points_drives_the_link_with_gen_link_start_and_loop(framework, tmp_path):
    project = tmp_path / "greenhouse"
    firmware = multi_file_project(tmp_path, framework)
    main = project / "src" / ("main.cpp" if framework == "arduino" else "main.c")
    main.write_text('#include <Arduino.h>\n#include "gen_link.h"\nvoid setup() { gen_link_start(); }\n'
                    'void loop() { gen_link_loop(); }\n' if framework == "arduino" else
                    '#include "gen_link.h"\nvoid app_main(void)\n{\n    gen_link_start();\n    for (;;) {\n'
                    '        gen_link_loop();\n    }\n}\n')
    device = replace(example_devices(EXAMPLE[framework])[0], build_flags=("-DGEN_LINK_OWN_MAIN",))
    firmware = write_firmware_project(project, device)
    assert compile_firmware(firmware, framework, tmp_path / "cache").is_file()   # one setup()/app_main: gen_link's is out
