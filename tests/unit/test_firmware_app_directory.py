"""The app is a directory: every .c/.cpp/.h of src/ next to the spec is compiled, the project's own PlatformIO
libraries (lib/) and ESP-IDF components (components/) too, in place (no copies, no #include of one file by
another); each build leaves out the other framework's starter. Read back from the generated project's own build
files, as the host build and the fingerprint of an image read them."""

from __future__ import annotations


import pytest

from firmware_fakes import multi_file_project
from generator.firmware.fingerprint import firmware_fingerprint
from generator.simulate.host_project import read_project



@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_every_source_file_of_the_app_folder_and_its_own_library_is_compiled(framework, tmp_path):
    firmware = multi_file_project(tmp_path, framework)
    project = read_project(firmware, framework)
    app = tmp_path / "greenhouse"
    compiled = {str(path.relative_to(app)) for path in project.sources
                if path.is_relative_to(app) and not path.is_relative_to(firmware)}
    library = "lib/soil_moisture/src/soil_moisture.cpp" if framework == "arduino" else \
        "components/soil_moisture/soil_moisture.c"
    first, second = ("src/app.cpp", "src/readings.cpp") if framework == "arduino" else ("src/app.c", "src/readings.c")
    assert compiled == {first, second, library}


@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_the_other_frameworks_starter_in_src_is_left_out_of_the_build(framework, tmp_path):
    firmware = multi_file_project(tmp_path, framework)
    other = "app.c" if framework == "arduino" else "app.cpp"
    assert (tmp_path / "greenhouse" / "src" / other).is_file()
    assert other not in {path.name for path in read_project(firmware, framework).sources}


@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_the_app_folder_and_the_libraries_headers_are_on_the_include_path(framework, tmp_path):
    firmware = multi_file_project(tmp_path, framework)
    include_dirs = set(read_project(firmware, framework).include_dirs)
    app = (tmp_path / "greenhouse").resolve()
    library = app / ("lib/soil_moisture/src" if framework == "arduino" else "components/soil_moisture/include")
    assert app / "src" in include_dirs and library in include_dirs


@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_an_edit_to_a_second_app_file_or_a_library_changes_the_images_fingerprint(framework, tmp_path):
    firmware = multi_file_project(tmp_path, framework)
    app = tmp_path / "greenhouse"
    before = firmware_fingerprint(firmware)
    readings = next((app / "src").glob("readings.c*"))
    readings.write_text(readings.read_text() + "\n// tuned\n")
    after_app = firmware_fingerprint(firmware)
    header = next(app.rglob("soil_moisture.h"))
    header.write_text(header.read_text() + "\n// tuned\n")
    assert len({before, after_app, firmware_fingerprint(firmware)}) == 3


def test_a_new_library_folder_is_a_lib_deps_entry_once_the_project_is_generated_again(tmp_path):
    firmware = multi_file_project(tmp_path, "arduino")
    ini = (firmware / "platformio.ini").read_text()
    assert "soil_moisture=symlink://../../../../lib/soil_moisture" in ini


def test_a_components_folder_next_to_the_spec_is_an_extra_component_dir_of_the_esp_idf_project(tmp_path):
    firmware = multi_file_project(tmp_path, "espidf")
    cmake = (firmware / "CMakeLists.txt").read_text()
    assert 'list(APPEND EXTRA_COMPONENT_DIRS "${CMAKE_CURRENT_LIST_DIR}/../../../../components")' in cmake
