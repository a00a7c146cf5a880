"""`gen generate` with nothing to do says so at once (the stamp in OUT, generator.output.up_to_date), and anything the
run depends on, changed, makes the next run the full one again."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import pytest

import generator.spec
from conftest import EXAMPLES_DIR
from generator.cli import main
from generator.output import up_to_date
from generator.output.up_to_date import STAMP_NAME, unchanged_run


@pytest.fixture
def spec_loads(monkeypatch) -> list[Path]:
    """Each full run reads the spec: the paths read, in order (the short way reads none)."""
    loads: list[Path] = []
    real = generator.spec.load_spec_source

    def counting(path, *args, **kwargs):
        loads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(generator.spec, "load_spec_source", counting)
    return loads


def project(tmp_path: Path, example: str = "fleet-nvs") -> Path:
    shutil.copytree(EXAMPLES_DIR / example, tmp_path / example, ignore=shutil.ignore_patterns("pki", "build"))
    return tmp_path / example / "device.yaml"


def generate(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(["generate", *map(str, args)])
    captured = capsys.readouterr()
    assert done.value.code == 0, captured.out + captured.err
    return captured.out


def counts_aside(output: str) -> str:
    return re.sub(r"\(\d+ files? changed[^)]*\)", "(...)", output)


def out_times(spec: Path) -> dict[str, int]:
    out = spec.parent / "build"
    return {str(path): path.lstat().st_mtime_ns for path in out.rglob("*")}


def test_a_second_run_with_nothing_changed_says_what_the_first_did_without_reading_anything(tmp_path, capsys,
                                                                                           spec_loads):
    spec = project(tmp_path)
    first = generate(capsys, spec)
    before = out_times(spec)
    second = generate(capsys, spec)
    assert spec_loads == [spec]                                  # the second run never read the spec
    assert "(0 files changed)" in second
    assert counts_aside(second) == counts_aside(first[first.index("generated "):])
    assert out_times(spec) == before                             # and touched nothing in OUT


def test_the_short_way_prints_the_same_lines_as_a_full_run_that_changed_nothing(tmp_path, capsys, monkeypatch):
    spec = project(tmp_path)
    generate(capsys, spec)
    (spec.parent / "build" / STAMP_NAME).unlink()
    full = generate(capsys, spec)                                # nothing changed, the full way
    short = generate(capsys, spec)
    assert "(0 files changed)" in full and short == full


def test_an_edited_spec_is_generated_again(tmp_path, capsys, spec_loads):
    spec = project(tmp_path)
    generate(capsys, spec)
    spec.write_text(spec.read_text().replace("interval: 5", "interval: 7"))
    output = generate(capsys, spec)
    assert len(spec_loads) == 2 and "(0 files changed)" not in output


def test_a_changed_secret_is_generated_again(tmp_path, capsys, spec_loads):
    spec = project(tmp_path)
    generate(capsys, spec)
    nvs = spec.parent / "build" / "devices" / "sensor-01" / "nvs.bin"
    image = nvs.read_bytes()
    secrets = spec.parent / "secrets.yaml"
    secrets.write_text(secrets.read_text().replace("wifi_password: ", "wifi_password: changed-"))
    generate(capsys, spec)
    assert len(spec_loads) == 2 and nvs.read_bytes() != image


def test_a_changed_environment_variable_the_spec_names_is_generated_again(tmp_path, capsys, monkeypatch,
                                                                         spec_loads):
    spec = project(tmp_path)
    spec.write_text(spec.read_text().replace("topic: fleet/{id}/telemetry", "topic: ${ROOM}/{id}/telemetry"))
    monkeypatch.setenv("ROOM", "kitchen")
    generate(capsys, spec)
    monkeypatch.setenv("ROOM", "cellar")
    generate(capsys, spec)
    assert len(spec_loads) == 2
    assert "cellar/sensor-01/telemetry" in (spec.parent / "build" / "broker" / "acl").read_text()


def test_a_file_gen_wrote_and_someone_edited_is_restored(tmp_path, capsys, spec_loads):
    spec = project(tmp_path)
    generate(capsys, spec)
    acl = spec.parent / "build" / "broker" / "acl"
    original = acl.read_text()
    acl.write_text(original + "topic readwrite #\n")
    generate(capsys, spec)
    assert len(spec_loads) == 2 and acl.read_text() == original


def test_a_certificate_renewed_in_the_pki_is_generated_again(tmp_path, capsys):
    spec = project(tmp_path)
    generate(capsys, spec)
    nvs = spec.parent / "build" / "devices" / "sensor-01" / "nvs.bin"
    image = nvs.read_bytes()
    with pytest.raises(SystemExit) as done:
        main(["pki", "renew", str(spec), "sensor-01"])
    assert done.value.code == 0
    capsys.readouterr()
    output = generate(capsys, spec)
    assert "(0 files changed)" not in output and nvs.read_bytes() != image


def test_a_new_library_folder_of_the_users_is_generated_again(tmp_path, capsys, spec_loads):
    spec = project(tmp_path)
    generate(capsys, spec)
    library = spec.parent / "lib" / "room_sensor"
    library.mkdir(parents=True)
    (library / "room_sensor.h").write_text("#pragma once\n")
    output = generate(capsys, spec)
    assert len(spec_loads) == 2 and "(0 files changed)" not in output


def test_a_run_for_one_device_leaves_the_next_run_the_full_one(tmp_path, capsys, spec_loads):
    spec = project(tmp_path)
    generate(capsys, spec)
    generate(capsys, spec, "--device", "sensor-01")
    assert not (spec.parent / "build" / STAMP_NAME).exists()
    generate(capsys, spec)
    assert len(spec_loads) == 3


def test_a_spec_whose_devices_make_their_own_keys_always_runs_the_full_way(tmp_path, capsys, spec_loads):
    spec = project(tmp_path, "arduino-device-key")
    generate(capsys, spec)
    generate(capsys, spec)
    assert len(spec_loads) == 2 and not (spec.parent / "build" / STAMP_NAME).exists()


def test_the_pki_acts_on_the_clock_first_when_its_crl_falls_due_for_signing(tmp_path, capsys):
    from cryptography import x509

    from generator.pki.ca import clock_acts_at, crl_due
    from generator.pki.layout import PkiLayout

    spec = project(tmp_path)
    generate(capsys, spec)
    pki = spec.parent / "pki"
    due = crl_due(x509.load_pem_x509_crl((pki / "crl.pem").read_bytes()))
    assert due is not None and clock_acts_at(PkiLayout(pki)) == due


def test_the_short_way_lasts_a_day_at_most(tmp_path, capsys):
    spec = project(tmp_path)
    generate(capsys, spec)
    out, now = spec.parent / "build", dt.datetime.now(dt.timezone.utc)
    assert unchanged_run(spec, out, now + dt.timedelta(hours=23)) is not None
    assert unchanged_run(spec, out, now + dt.timedelta(hours=25)) is None


def test_the_short_way_ends_when_the_pki_acts_on_the_clock(tmp_path, capsys, monkeypatch):
    import generator.pki.ca

    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    monkeypatch.setattr(generator.pki.ca, "clock_acts_at", lambda layout: soon)
    spec = project(tmp_path)
    generate(capsys, spec)
    out = spec.parent / "build"
    assert unchanged_run(spec, out, soon - dt.timedelta(minutes=1)) is not None
    assert unchanged_run(spec, out, soon) is None


def test_a_new_version_of_gen_runs_the_full_way(tmp_path, capsys, monkeypatch):
    spec = project(tmp_path)
    generate(capsys, spec)
    out = spec.parent / "build"
    now = dt.datetime.now(dt.timezone.utc)
    assert unchanged_run(spec, out, now) is not None
    monkeypatch.setattr(up_to_date, "code_digest", lambda: "another gen")
    assert unchanged_run(spec, out, now) is None


def test_a_spec_edited_while_generate_runs_is_not_taken_for_what_it_read(tmp_path, capsys, monkeypatch,
                                                                        spec_loads):
    import generator.output.generate as output_generate

    spec = project(tmp_path)
    real = output_generate.generate

    def edited_meanwhile(*args, **kwargs):
        result = real(*args, **kwargs)
        spec.write_text(spec.read_text().replace("interval: 5", "interval: 9"))   # after it was read
        return result

    monkeypatch.setattr(output_generate, "generate", edited_meanwhile)
    generate(capsys, spec)
    assert not (spec.parent / "build" / STAMP_NAME).exists()
    monkeypatch.setattr(output_generate, "generate", real)
    generate(capsys, spec)
    assert len(spec_loads) == 2


def test_the_stamp_is_private_and_holds_no_secret(tmp_path, capsys):
    spec = project(tmp_path)
    generate(capsys, spec)
    stamp = spec.parent / "build" / STAMP_NAME
    assert stamp.stat().st_mode & 0o777 == 0o600
    secrets = (spec.parent / "secrets.yaml").read_text()
    password = next(line.split(":", 1)[1].strip().strip('"') for line in secrets.splitlines()
                    if line.startswith("wifi_password"))
    text = stamp.read_text()
    assert password not in text and "PRIVATE KEY" not in text
    assert os.path.getsize(stamp) > 0


def test_a_spec_changed_just_after_its_run_with_the_same_size_and_time_is_generated_again(tmp_path, capsys,
                                                                                          spec_loads):
    spec = project(tmp_path)
    spec.write_text(spec.read_text())                 # written now: within the stamp's coarse-time window
    generate(capsys, spec)
    before = spec.stat()
    with open(spec, "r+b") as file:                   # in place: same inode, same size
        text = file.read()
        file.seek(0)
        file.write(text.replace(b"interval: 5", b"interval: 6"))
    os.utime(spec, ns=(before.st_atime_ns, before.st_mtime_ns))   # a filesystem whose clock did not move on
    output = generate(capsys, spec)
    assert len(spec_loads) == 2 and "(0 files changed)" not in output


def test_a_pki_changed_by_another_command_while_generate_renders_is_not_taken_for_what_it_read(tmp_path, capsys,
                                                                                                monkeypatch):
    import generator.output.generate as output_generate

    spec = project(tmp_path)
    generate(capsys, spec)
    (spec.parent / "build" / STAMP_NAME).unlink()
    real = output_generate.render_output

    def revoked_meanwhile(*args, **kwargs):
        index = spec.parent / "pki" / "index.json"
        index.write_bytes(index.read_bytes())       # what a `gen pki revoke` in another shell does to it
        return real(*args, **kwargs)

    monkeypatch.setattr(output_generate, "render_output", revoked_meanwhile)
    generate(capsys, spec)
    assert not (spec.parent / "build" / STAMP_NAME).exists()
