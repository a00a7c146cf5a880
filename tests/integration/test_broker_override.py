"""One local override of the broker address (issue 26, item 7): GEN_BROKER or broker.local next to the spec, shown
when in effect; --broker still wins. The doctor scenario runs against real mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LOOPBACK
from generator.cli import main
from generator.cli.broker_override import local_broker
from generator.core.errors import UserError


def run_gen(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def test_gen_doctor_dials_the_broker_gen_broker_names_and_says_so(capsys, monkeypatch, broker_project, start_broker):
    project = broker_project("mtls")
    broker = start_broker(project.broker_dir)
    monkeypatch.setenv("GEN_BROKER", f"{LOOPBACK}:{broker.port}")
    code, output = run_gen(capsys, "doctor", str(project.spec.path), "--device", "sensor-a")
    assert code == 0, output
    assert f"broker {LOOPBACK}:{broker.port} (from $GEN_BROKER" in output


def test_a_broker_local_file_next_to_the_spec_is_the_override_when_no_variable_is_set(tmp_path):
    (tmp_path / "broker.local").write_text("# this laptop\n127.0.0.1:18883\n")
    assert local_broker(tmp_path / "device.yaml", None, {}) == ("127.0.0.1:18883", str(tmp_path / "broker.local"))


def test_the_broker_option_wins_over_the_variable_and_the_file(tmp_path):
    (tmp_path / "broker.local").write_text("127.0.0.1:18883\n")
    assert local_broker(tmp_path / "device.yaml", "10.0.0.2:8883", {"GEN_BROKER": "127.0.0.1:1"}) == \
        ("10.0.0.2:8883", None)


def test_a_broker_local_file_with_two_addresses_is_refused_naming_the_file(tmp_path):
    (tmp_path / "broker.local").write_text("127.0.0.1:1\n127.0.0.1:2\n")
    with pytest.raises(UserError) as refused:
        local_broker(tmp_path / "device.yaml", None, {})
    assert str(tmp_path / "broker.local") in refused.value.message
