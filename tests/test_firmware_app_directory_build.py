"""A multi-file app with a library of its own builds and links in both flavours (the host build: the framework's
own flags, gen's -Wall -Wextra, any warning fails), the other framework's starter (an #error) left out."""

from __future__ import annotations

import pytest

from generator.simulate.host_build import compile_firmware
from test_firmware_app_directory import multi_file_project


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_a_multi_file_app_with_its_own_library_builds_and_links(framework, tmp_path):
    firmware = multi_file_project(tmp_path, framework)
    binary = compile_firmware(firmware, framework, tmp_path / "cache")
    assert binary.is_file()
