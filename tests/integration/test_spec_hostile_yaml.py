"""Hostile input to the spec reader: whatever a file holds, `gen check` answers with exit 2 and one message naming
the file (and line where there is one), in bounded time and memory. The small hostile specs (alias bomb, deep
nesting, huge scalars and integers, binary, control characters) are in the invalid corpus
(tests/spec_cases/invalid/yaml_*.yaml); these are the ones that cannot be committed as files, or need a process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


from generator.spec.source import MAX_FILE_BYTES, MAX_NODES

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "projects/examples/arduino-mtls"
HANG_GUARD_S = 60  # far above the fraction of a second these take (bench/hostile_yaml.py prints the figures)


def gen_check(spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", "check", str(spec)], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_a_spec_larger_than_the_limit_is_refused_without_being_parsed(tmp_path):
    spec = tmp_path / "device.yaml"
    with spec.open("w") as handle:
        handle.write("project: huge\n")
        handle.write("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    assert_refused(gen_check(spec), str(spec), "larger than 4 MiB")


def test_a_directory_given_as_the_spec_names_the_file_to_pass(tmp_path):
    assert_refused(gen_check(tmp_path), "is a directory", str(tmp_path / "device.yaml"))


def test_a_pipe_given_as_the_spec_is_refused_instead_of_read_forever(tmp_path):
    fifo = tmp_path / "device.yaml"
    os.mkfifo(fifo)
    assert_refused(gen_check(fifo), "not a regular file")


def test_an_alias_bomb_in_secrets_yaml_is_refused_with_its_line(tmp_path):
    shutil.copy(EXAMPLE / "device.yaml", tmp_path / "device.yaml")
    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        laughs.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    (tmp_path / "secrets.yaml").write_text("wifi_ssid: net\nwifi_password: '12345678'\n" + "\n".join(laughs) + "\n")
    assert_refused(gen_check(tmp_path / "device.yaml"), f"{tmp_path / 'secrets.yaml'}:", "aliases")


def test_a_fleet_spec_well_within_the_node_limit_is_read(tmp_path):
    devices = 20_000                          # 3 nodes each: ten times the largest fleet benchmarked
    assert devices * 3 < MAX_NODES
    spec = tmp_path / "device.yaml"
    spec.write_text((EXAMPLE / "device.yaml").read_text().split("device:")[0].replace("{id}", "{id}")
                    + "devices:\n" + "".join(f"  - id: dev-{i:05d}\n" for i in range(devices)))
    shutil.copy(EXAMPLE / "secrets.yaml", tmp_path / "secrets.yaml")
    from generator.spec.source import read_spec_source

    assert len(read_spec_source(spec).data["devices"]) == devices


def test_anchors_and_aliases_within_the_limits_still_work(tmp_path):
    spec = tmp_path / "device.yaml"
    spec.write_text("project: anchors\nwifi: &net {ssid: net, password: '12345678'}\nbroker: {host: mqtt.example.com}\n"
                    "publish: &telemetry [{name: t, topic: 'f/{id}/t'}]\n"
                    "devices:\n  - id: a\n    wifi: *net\n  - id: b\n    publish: *telemetry\n")
    result = gen_check(spec)
    assert result.returncode == 0, result.stderr
    assert "topic: f/b/t" in result.stdout
