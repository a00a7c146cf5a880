"""The user's own code lives next to the spec, in git; OUT (build/) holds only what gen can make again. Deleting
build/ loses nothing, regenerating removes what gen no longer makes (and only that), and an app source an earlier
gen kept under build/ is moved out once."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from generator.core.errors import UserError
from generator.firmware.render import USER_APP_SOURCE
from generator.firmware.app_layout import user_code
from generator.output.generate import generate
from generator.simulate.host_build import compile_firmware
from generator.output.layout import firmware_dir
from generator.output.manifest import read_manifest
from generator.core.paths import PROJECT_ROOT
from generator.spec import load_spec

EXAMPLES = PROJECT_ROOT / "projects" / "examples"


def copy_example(name: str, tmp_path: Path) -> Path:
    project = tmp_path / name
    shutil.copytree(EXAMPLES / name, project, ignore=shutil.ignore_patterns("pki", "build"))
    return project / "device.yaml"


def gen(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **options)


def edit_spec(spec_path: Path, old: str, new: str) -> None:
    text = spec_path.read_text()
    assert old in text, old
    spec_path.write_text(text.replace(old, new))


def test_the_users_app_code_survives_deleting_build_and_regenerating(tmp_path):
    spec_path = copy_example("arduino-mtls", tmp_path)
    app = spec_path.parent / "src" / "app.cpp"
    app.write_text(app.read_text().replace("void app_loop() {\n}", "void app_loop() {\n    // my greenhouse logic\n}"))
    edited = app.read_bytes()
    generate(load_spec(spec_path))
    shutil.rmtree(spec_path.parent / "build")
    result = gen("generate", spec_path)
    assert result.returncode == 0, result.stderr
    assert app.read_bytes() == edited
    firmware = spec_path.parent / "build" / firmware_dir("greenhouse-01")
    assert user_code(firmware).app == app.parent.resolve()   # compiled in place, not copied


def test_a_new_project_gets_a_starter_app_once_and_it_is_never_overwritten(tmp_path):
    spec_path = copy_example("espidf-mtls", tmp_path)
    app = spec_path.parent / USER_APP_SOURCE["espidf"]
    app.unlink()
    first = gen("generate", spec_path)
    assert first.returncode == 0, first.stderr
    assert f"created {app}" in first.stdout and "app_build_telemetry" in app.read_text()
    app.write_text("// mine\n")
    second = gen("generate", spec_path)
    assert second.returncode == 0 and "created" not in second.stdout
    assert app.read_text() == "// mine\n"


@pytest.mark.slow
def test_switching_the_framework_leaves_no_file_of_the_old_one_and_simulates_cleanly(tmp_path):
    spec_path = copy_example("arduino-mtls", tmp_path)
    assert gen("generate", spec_path).returncode == 0
    firmware = spec_path.parent / "build" / firmware_dir("greenhouse-01")
    assert (firmware / "lib" / "gen_link" / "src" / "gen_link.cpp").is_file()
    edit_spec(spec_path, "target: esp32-arduino", "target: esp32-espidf")
    result = gen("simulate", spec_path, "--duration", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in firmware.iterdir()) == ["CMakeLists.txt", "components", "main", "partitions.csv",
                                                          "platformio.ini", "sdkconfig.defaults", "test"]
    assert sorted(p.name for p in (firmware / "main").iterdir()) == ["CMakeLists.txt"]
    assert not (firmware / "partitions.csv").read_text().count("arduino")
    assert (spec_path.parent / "src" / "app.c").is_file() and (spec_path.parent / "src" / "app.cpp").is_file()
    assert "[mqtt] connected" in result.stdout


def test_changing_auth_to_password_removes_the_devices_key_and_certificate(tmp_path):
    spec_path = copy_example("arduino-mtls", tmp_path)
    generate(load_spec(spec_path))
    device = spec_path.parent / "build" / "devices" / "greenhouse-01"
    assert (device / "client.key").is_file()
    edit_spec(spec_path, "auth: mtls", "auth: password")
    result = generate(load_spec(spec_path))
    assert not (device / "client.key").exists() and not (device / "client.pem").exists()
    assert "devices/greenhouse-01/client.key" in result.removed


def test_a_device_renamed_or_removed_leaves_nothing_behind(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    generate(load_spec(spec_path))
    out = spec_path.parent / "build"
    (out / "artifacts" / "sensor-02").mkdir(parents=True)
    (out / "artifacts" / "sensor-02" / "firmware.bin").write_bytes(b"an old image")
    (out / "devices" / "sensor-02" / "firmware" / ".pio").mkdir()       # PlatformIO's build of it
    edit_spec(spec_path, "  - id: sensor-02\n", "  - id: sensor-20\n")
    generate(load_spec(spec_path))
    assert not (out / "devices" / "sensor-02").exists() and not (out / "artifacts" / "sensor-02").exists()
    assert (out / "devices" / "sensor-20" / "nvs.bin").is_file()
    assert read_manifest(out).device("sensor-02") is None


def test_regenerating_never_touches_a_file_gen_did_not_make(tmp_path):
    spec_path = copy_example("arduino-mtls", tmp_path)
    generate(load_spec(spec_path))
    firmware = spec_path.parent / "build" / firmware_dir("greenhouse-01")
    mine = [firmware / "lib" / "sensors" / "sensors.h", spec_path.parent / "build" / "notes.txt"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine\n")
    edit_spec(spec_path, "auth: mtls", "auth: password")
    generate(load_spec(spec_path))
    assert all(path.read_text() == "mine\n" for path in mine)


def test_generating_one_device_keeps_the_other_devices_files(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    generate(load_spec(spec_path))
    out = spec_path.parent / "build"
    generate(load_spec(spec_path), device_ids=["sensor-05"])
    assert (out / "devices" / "sensor-01" / "nvs.bin").is_file()
    assert (out / firmware_dir("sensor-01") / "lib" / "gen_link" / "src" / "gen_link.cpp").is_file()
    assert "devices/sensor-01/nvs.bin" in read_manifest(out).generated_files


def test_an_app_source_an_earlier_gen_kept_under_build_is_moved_next_to_the_spec_once(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    (spec_path.parent / "src" / "app.cpp").unlink()
    out = spec_path.parent / "build"
    legacy = "// my fleet's code, written when gen kept it in build/\n#include \"app.h\"\n"
    for device_id in ("sensor-01", "sensor-02"):
        path = out / firmware_dir(device_id) / "src" / "app.cpp"
        path.parent.mkdir(parents=True)
        path.write_text(legacy)
    first = gen("generate", spec_path)
    assert first.returncode == 0, first.stderr
    assert "moved your app code" in first.stdout and "1 identical copies" in first.stdout
    assert (spec_path.parent / "src" / "app.cpp").read_text() == legacy
    assert not (out / firmware_dir("sensor-01") / "src" / "app.cpp").exists()
    second = gen("generate", spec_path)
    assert "moved" not in second.stdout and (spec_path.parent / "src" / "app.cpp").read_text() == legacy


def test_app_sources_that_differ_between_devices_are_not_merged_by_guess(tmp_path):
    spec_path = copy_example("fleet-nvs", tmp_path)
    (spec_path.parent / "src" / "app.cpp").unlink()
    out = spec_path.parent / "build"
    for device_id in ("sensor-01", "sensor-02"):
        path = out / firmware_dir(device_id) / "src" / "app.cpp"
        path.parent.mkdir(parents=True)
        path.write_text(f"// code of {device_id}\n")
    result = gen("generate", spec_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "differ" in result.stderr and "merge them" in result.stderr
    assert not (spec_path.parent / "src" / "app.cpp").exists()
    assert (out / firmware_dir("sensor-02") / "src" / "app.cpp").read_text() == "// code of sensor-02\n"


def test_a_spec_in_a_read_only_folder_generates_elsewhere_once_its_pki_is_complete(tmp_path):
    """The project folder (spec, app source, complete PKI) may not be written by the user who runs gen, e.g. a
    read-only checkout: gen generate --out elsewhere still works. As root nothing is read-only, so the folder is
    given to `nobody` and gen runs as nobody."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="gen-readonly-"))   # reachable by another user
    os.chmod(base, 0o755)
    try:
        spec_path = copy_example("arduino-mtls", base)
        generate(load_spec(spec_path))                        # the PKI and the app source exist
        (spec_path.parent / "pki" / ".lock").unlink()          # a fresh checkout of the PKI: no lock file
        out = base / "elsewhere"
        out.mkdir()
        argv = [sys.executable, "-m", "generator", "generate", str(spec_path), "--out", str(out)]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("needs setpriv (util-linux) to run gen as another user")
            as_nobody = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            if subprocess.run([*as_nobody, sys.executable, "-c", "import generator"], capture_output=True).returncode:
                pytest.skip(f"nobody cannot run gen from this checkout ({PROJECT_ROOT}): a folder above it is "
                            "private (mktemp -d makes 0700 folders); clone it where other users may read it")
            argv = [*as_nobody, *argv]
            for path in [out, spec_path.parent, *spec_path.parent.rglob("*")]:
                os.chown(path, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
        for path in [spec_path.parent, *spec_path.parent.rglob("*")]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444 & stat.S_IMODE(path.stat().st_mode) | 0o400)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(out)})
        assert "Traceback" not in result.stderr
        assert result.returncode == 0, result.stderr
        assert (out / "broker" / "mosquitto.conf").is_file()
        assert not (spec_path.parent / "pki" / ".lock").exists()
    finally:
        for path in [base, *base.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)


def test_folders_have_explicit_modes_whatever_the_umask(tmp_path):
    spec_path = copy_example("arduino-mtls", tmp_path)
    previous = os.umask(0)
    try:
        generate(load_spec(spec_path))
    finally:
        os.umask(previous)
    out = spec_path.parent / "build"

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(out) == 0o755 and mode(out / "devices") == 0o755
    assert mode(out / "devices" / "greenhouse-01") == 0o700            # client.key lies in it
    assert mode(out / firmware_dir("greenhouse-01") / "include") == 0o700  # gen_credentials.h (secrets: embed)
    assert mode(out / "broker") == 0o700                               # broker.key
    assert mode(out / firmware_dir("greenhouse-01")) == 0o755
    for path in out.rglob("*"):
        assert mode(path) & 0o002 == 0, path


def test_a_function_the_spec_now_needs_is_named_with_the_declaration_to_add(tmp_path):
    spec_path = copy_example("espidf-mtls", tmp_path)
    edit_spec(spec_path, "publish:\n", "publish:\n  - name: humidity\n    topic: devices/{id}/humidity\n"
                                       "    interval: 30\n")
    spec = load_spec(spec_path)
    generate(spec)
    with pytest.raises(UserError) as failed:
        compile_firmware(spec.default_out_dir / firmware_dir(spec.devices[0].id), "espidf", tmp_path / "cache")
    message = str(failed.value)
    assert "int app_build_humidity(char *payload, size_t capacity);" in message or \
        "int app_build_humidity(char* payload, size_t capacity);" in message
    assert f"{spec_path.parent / 'src'}/" in message
