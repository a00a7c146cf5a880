"""The host build (gen simulate) with the user's own code (issue 26, item 3), real g++: a link error names the
undefined reference at the user's file, its path normalized; a warning in the user's code is shown, not fatal;
gen's own code stays warning-free (tested by every other host build)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES_DIR
from generator.cli import main


def run_gen(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def project_with_app(tmp_path: Path, app_loop: str) -> Path:
    project = tmp_path / "greenhouse"
    shutil.copytree(EXAMPLES_DIR / "arduino-mtls", project, ignore=shutil.ignore_patterns("pki", "build"))
    app = project / "src" / "app.cpp"
    app.write_text(app.read_text().replace("void app_loop() {\n}", app_loop))
    return project / "device.yaml"


def test_a_link_error_in_the_users_code_names_the_undefined_reference_at_its_file(capsys, tmp_path, monkeypatch):
    spec = project_with_app(tmp_path, "int read_sensor();\nvoid app_loop() {\n    (void)read_sensor();\n}")
    monkeypatch.chdir(spec.parent)
    code, output = run_gen(capsys, "simulate", str(spec), "--build-only")
    assert code == 1, output
    assert "undefined reference to `read_sensor()'" in output
    assert "src/app.cpp" in output and "/../" not in output
    assert "warning" not in output.split("fix:")[-1]


def test_a_warning_in_the_users_code_is_shown_and_the_host_build_goes_on(capsys, tmp_path, monkeypatch):
    spec = project_with_app(tmp_path, "void app_loop() {\n    int unused_reading = 3;\n}")
    monkeypatch.chdir(spec.parent)
    code, output = run_gen(capsys, "simulate", str(spec), "--build-only")
    assert code == 0, output
    assert "src/app.cpp:" in output and "unused_reading" in output and "not fatal" in output


def test_a_cold_host_build_tells_each_source_it_compiled_n_of_m(tmp_path):
    from generator.output.generate import generate
    from generator.simulate.host_build import compile_firmware
    from generator.spec import load_spec

    spec = project_with_app(tmp_path, "void app_loop() {\n}")
    loaded = load_spec(spec)
    generate(loaded, spec.parent / "build")
    heard: list[str] = []
    compile_firmware(spec.parent / "build" / "devices" / "greenhouse-01" / "firmware", "arduino",
                     tmp_path / "cache", heard.append)
    assert any(line.startswith("compiled app.cpp (") and " of " in line for line in heard), heard[:5]
    assert heard[-1] == "linking the firmware"
