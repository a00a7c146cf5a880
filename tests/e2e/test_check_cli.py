"""`gen check` as a user runs it: a bad spec exits 2 with file:line and no traceback; secrets never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CASES = Path(__file__).parent.parent / "spec_cases"


def test_the_cli_process_prints_no_traceback_for_bad_yaml():
    spec = CASES / "invalid" / "bad_yaml_indent.yaml"
    result = subprocess.run([sys.executable, "-m", "generator", "check", str(spec)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{spec}:6:" in result.stderr


def test_gen_check_never_prints_secrets(tmp_path):
    secret_password = "Zq9!UNIQUE wifi-pass/7Kp"
    secret_ssid = "SSID-UNIQUE-4711"
    env_token = "ENV-UNIQUE-8813"
    (tmp_path / "secrets.yaml").write_text(f"ssid: {secret_ssid}\npass: '{secret_password}'\n")
    (tmp_path / "device.yaml").write_text(
        "project: leak\nwifi: {ssid: !secret ssid, password: !secret pass}\n"
        "broker: {host: mqtt.example.com}\ndevice: {id: d1}\n"
    )
    env = dict(os.environ, GEN_TEST_TOKEN=env_token)
    result = subprocess.run([sys.executable, "-m", "generator", "check", str(tmp_path / "device.yaml")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert secret_password not in result.stdout + result.stderr
    assert secret_ssid not in result.stdout + result.stderr
    assert "******" in result.stdout
    # An invalid spec's error messages do not print the secret either.
    (tmp_path / "device.yaml").write_text(
        "project: leak\nwifi: {ssid: !secret ssid, password: !secret pass}\n"
        "broker: {host: !secret pass}\ndevice: {id: d1}\n"
    )
    result = subprocess.run([sys.executable, "-m", "generator", "check", str(tmp_path / "device.yaml")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert secret_password not in result.stdout + result.stderr
