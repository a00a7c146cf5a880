"""`gen ci github`: the workflow builds the fleet, caches PlatformIO, uploads each device by name, and reads every
secret from GitHub's secret store, never from the file."""

from __future__ import annotations

import subprocess

import yaml

from fake_tools.fixtures import gen_cli  # noqa: F401  (fixture)
from fake_tools.out_layout import copy_example
from generator.build.ci_workflow import render_github_workflow
from generator.spec import load_spec


def fleet_repo(tmp_path):
    repo = tmp_path / "repo"
    spec_path = copy_example("fleet-nvs", repo / "projects" / "fleet")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo, spec_path


def steps_of(text):
    return yaml.safe_load(text)["jobs"]["firmware"]["steps"]


def test_the_workflow_caches_platformio_installs_gen_builds_the_fleet_and_uploads_each_device(tmp_path):
    repo, spec_path = fleet_repo(tmp_path)
    spec = load_spec(spec_path)
    relative, text = render_github_workflow(spec, repo)
    assert relative == ".github/workflows/sensorfleet-firmware.yml"
    steps = steps_of(text)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == "~/.platformio"
    assert any(s.get("run", "").startswith("pip install esp32-mqtt-gen") for s in steps)
    build = next(s for s in steps if s.get("run", "").startswith("gen build"))
    assert build["run"] == 'gen build "projects/fleet/device.yaml" --out "projects/fleet/build"'
    uploads = [s["with"] for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert [u["name"] for u in uploads] == [f"sensorfleet-{d.id}" for d in spec.devices]
    assert uploads[0]["path"] == "projects/fleet/build/artifacts/sensor-01/"
    order = [s.get("name", s.get("uses")) for s in steps]
    assert order.index("Write secrets.yaml from the secret store") < order.index("Build the firmware of every device")


def test_the_workflow_takes_every_secret_from_the_secret_store_and_holds_no_value(tmp_path):
    repo, spec_path = fleet_repo(tmp_path)
    spec = load_spec(spec_path)
    _relative, text = render_github_workflow(spec, repo)
    assert spec.devices[0].wifi.password not in text and spec.devices[0].wifi.ssid not in text
    steps = steps_of(text)
    secrets_step = next(s for s in steps if s.get("name") == "Write secrets.yaml from the secret store")
    assert secrets_step["env"] == {"WIFI_SSID": "${{ secrets.WIFI_SSID }}", "WIFI_PASSWORD": "${{ secrets.WIFI_PASSWORD }}"}
    assert "projects/fleet/secrets.yaml" in secrets_step["run"] and "umask 077" in secrets_step["run"]
    pki_step = next(s for s in steps if s.get("name") == "Restore the PKI from the secret store")
    assert pki_step["env"] == {"PKI_ARCHIVE": "${{ secrets.SENSORFLEET_PKI }}"}


def test_the_python_that_writes_secrets_yaml_in_ci_writes_what_the_spec_reads(tmp_path):
    repo, spec_path = fleet_repo(tmp_path)
    _relative, text = render_github_workflow(load_spec(spec_path), repo)
    script = next(s for s in steps_of(text) if s.get("name") == "Write secrets.yaml from the secret store")["run"]
    (spec_path.parent / "secrets.yaml").unlink()
    env = {"WIFI_SSID": "ci-ssid", "WIFI_PASSWORD": 'p@ss: "quoted" #1', "PATH": "/usr/bin:/bin"}
    import os
    import sys

    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, check=True)
    assert (spec_path.parent / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    reloaded = load_spec(spec_path)
    assert reloaded.devices[0].wifi.ssid == "ci-ssid"
    assert reloaded.devices[0].wifi.password == 'p@ss: "quoted" #1'


def test_environment_references_in_the_spec_become_secrets_of_the_build_step(tmp_path):
    repo, spec_path = fleet_repo(tmp_path)
    spec_path.write_text(spec_path.read_text().replace("host: mqtt.example.com", "host: ${BROKER_HOST}"))
    spec = load_spec(spec_path, environ={"BROKER_HOST": "mqtt.internal"})
    _relative, text = render_github_workflow(spec, repo)
    build = next(s for s in steps_of(text) if s.get("name") == "Build the firmware of every device")
    assert build["env"] == {"BROKER_HOST": "${{ secrets.BROKER_HOST }}"}
    assert "mqtt.internal" not in text


def test_gen_ci_github_writes_the_workflow_at_the_repository_root_and_lists_the_secrets_to_set(tmp_path, gen_cli):
    repo, spec_path = fleet_repo(tmp_path)
    code, out, err = gen_cli("ci", "github", spec_path)
    assert code == 0, err
    workflow = repo / ".github" / "workflows" / "sensorfleet-firmware.yml"
    assert workflow.is_file() and str(workflow) in out
    for secret in ("SENSORFLEET_PKI", "WIFI_SSID", "WIFI_PASSWORD"):
        assert secret in out
