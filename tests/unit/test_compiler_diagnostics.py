"""Which compiler or linker line the host build reports (issue 26, item 3): pure, on real GCC/ld output shapes."""

from __future__ import annotations

from pathlib import Path

from generator.core.compiler_output import first_diagnostic, normalized_path, normalized_paths

LINK_FAILURE = """/usr/bin/ld: /tmp/cache/fw-1/000_app.o: in function `app_loop()':
/work/p/build/firmware/g-01/src/../../../../src/app.cpp:16: undefined reference to `read_sensor()'
collect2: error: ld returned 1 exit status
"""


def test_a_link_error_reports_the_undefined_reference_not_collect2s_summary():
    first = first_diagnostic(LINK_FAILURE)
    assert first is not None
    assert first.message == "undefined reference to `read_sensor()'"
    assert first.line == 16


def test_a_path_through_the_firmware_project_is_shown_as_the_users_file():
    assert normalized_path("/work/p/build/firmware/g-01/src/../../../../src/app.cpp", Path("/work/p")) == "src/app.cpp"
    assert "/../" not in normalized_paths(LINK_FAILURE, Path("/work/p"))


def test_a_compile_error_comes_before_any_warning_and_the_linker():
    output = ("src/app.cpp:3:5: warning: unused variable 'x' [-Wunused-variable]\n"
              "src/app.cpp:9:1: error: expected ';' before '}' token\n" + LINK_FAILURE)
    first = first_diagnostic(output)
    assert first is not None and first.kind == "error" and first.line == 9
