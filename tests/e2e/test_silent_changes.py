"""What gen changes on its own, it says once and plainly (issue 26, item 8): a new OTA signing key (back it up), a
re-issued broker certificate (named, with its names), a root CA key that is gone; and `gen new`'s placeholder WiFi
secrets do not pass `gen check`."""

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


def copied(tmp_path: Path, example: str) -> Path:
    project = tmp_path / example
    shutil.copytree(EXAMPLES_DIR / example, project, ignore=shutil.ignore_patterns("pki", "build"))
    return project / "device.yaml"


def test_a_new_ota_signing_key_is_announced_once_with_back_it_up(capsys, tmp_path):
    spec = copied(tmp_path, "arduino-ota")
    code, first = run_gen(capsys, "generate", str(spec))
    assert code == 0, first
    assert first.count("back it up") == 1 and "ota-signing-key.pem" in first
    code, second = run_gen(capsys, "generate", str(spec))
    assert code == 0 and "back it up" not in second


def test_placeholder_wifi_secrets_from_gen_new_fail_gen_check_naming_secrets_yaml(capsys, tmp_path):
    assert run_gen(capsys, "new", "demo", "--dir", str(tmp_path))[0] == 0
    code, output = run_gen(capsys, "check", str(tmp_path / "demo" / "device.yaml"))
    assert code == 2
    assert f"{tmp_path / 'demo' / 'secrets.yaml'}:2" in output and "placeholder" in output


def test_a_broker_certificate_reissued_for_new_names_is_named_with_its_new_names(capsys, tmp_path):
    spec = copied(tmp_path, "arduino-mtls")
    assert run_gen(capsys, "generate", str(spec))[0] == 0
    spec.write_text(spec.read_text().replace("names: [localhost, 127.0.0.1]", "names: [localhost, 127.0.0.1, mqtt.lan]"))
    code, output = run_gen(capsys, "generate", str(spec))
    assert code == 0, output
    assert output.count("re-issued the broker certificate pki/broker.pem") == 1 and "mqtt.lan" in output
    assert f"gen broker apply {spec}" in output


def test_a_missing_root_ca_key_is_noticed(capsys, tmp_path):
    spec = copied(tmp_path, "arduino-mtls")
    assert run_gen(capsys, "generate", str(spec))[0] == 0
    (spec.parent / "pki" / "private" / "ca-key.pem").unlink()
    code, output = run_gen(capsys, "generate", str(spec))
    assert code == 0, output
    assert output.count("the root CA key is not in pki/private/") == 1
