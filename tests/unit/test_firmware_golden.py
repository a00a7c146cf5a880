"""Golden files: one spec per flavour rendered with a fixed credential set, so every change to the rendered
files shows up in review (gen_link, the runtime library, is plain source in templates/gen_link/, reviewed as
such). `UPDATE_GOLDEN=1 pytest tests/unit/test_firmware_golden.py` rewrites them. Each file is stored
as `<path>.golden`, so pytest never collects a golden test/test_device.py."""

from __future__ import annotations

import os

import pytest

from firmware_fakes import GOLDEN, example_devices, golden_credentials, ota_public_key
from generator.firmware.render import USER_APP_SOURCE, link_library, render_app_starter, render_firmware

CASES = ["arduino-mtls-password", "espidf-mtls-password", "fleet-nvs", "arduino-ota", "espidf-ota"]


@pytest.mark.parametrize("name", CASES)
def test_generated_project_matches_its_golden_files(name):
    device = example_devices(name)[0]
    project = render_firmware(device, golden_credentials(device), spec_name="device.yaml",
                              ota_public_key=ota_public_key(device))
    # The project's own files, and the starter of the user's app (under project/, as it lies next to the spec).
    starter = {f"project/{USER_APP_SOURCE[device.framework]}": render_app_starter([device])}
    library = link_library(device.framework)
    files = {**{path: content for path, content in project.generated.items() if path not in library}, **starter}
    folder = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        for path, content in files.items():
            (folder / f"{path}.golden").parent.mkdir(parents=True, exist_ok=True)
            (folder / f"{path}.golden").write_bytes(content)
    on_disk = {str(p.relative_to(folder))[:-len(".golden")] for p in folder.rglob("*.golden")}
    assert on_disk == set(files), "the set of generated files changed; rerun with UPDATE_GOLDEN=1 and review"
    for path, content in files.items():
        assert content == (folder / f"{path}.golden").read_bytes(), f"{name}/{path} differs; rerun with UPDATE_GOLDEN=1 and review"


@pytest.mark.parametrize("name", ["arduino-mtls-password", "espidf-ota"])
def test_the_runtime_library_is_copied_into_the_project_byte_for_byte(name):
    device = example_devices(name)[0]
    project = render_firmware(device, golden_credentials(device), spec_name="device.yaml",
                              ota_public_key=ota_public_key(device))
    library = link_library(device.framework)
    assert library and all(project.generated[path] == content for path, content in library.items())
