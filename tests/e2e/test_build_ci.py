"""`gen ci github`: CI never holds a CA key. With `secrets: nvs` the workflow needs no secret at all and builds app
images that hold none; the per-device NVS images are made where the PKI lives (`gen flash --artifacts`). With
`secrets: embed` CI gets the embed devices' credentials only, refuses to issue a certificate, and a bundle over
GitHub's 48 KB limit fails clearly. The workflow says which artifacts carry secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import yaml

from fake_tools.fixtures import fake_tools, gen_cli  # noqa: F401  (fixtures)
from fake_tools.out_layout import copy_example
from generator.ci.credentials import decode_bundle
from generator.ci.workflow import render_github_workflow
from generator.spec import load_spec

EMBED_SPEC = """\
project: embedfleet
target: esp32-arduino
wifi:
  ssid: !secret wifi_ssid
  password: !secret wifi_password
broker:
  host: mqtt.example.com
auth: mtls
secrets: embed
status:
  topic: devices/{id}/status
publish:
  - name: telemetry
    topic: devices/{id}/telemetry
devices:
"""


def fleet_repo(tmp_path):
    repo = tmp_path / "repo"
    spec_path = copy_example("fleet-nvs", repo / "projects" / "fleet")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo, spec_path


def embed_repo(tmp_path, count: int = 2):
    repo = tmp_path / "repo"
    project = repo / "projects" / "embed"
    project.mkdir(parents=True)
    (project / "device.yaml").write_text(EMBED_SPEC + "".join(f"  - id: node-{i:03d}\n" for i in range(count)))
    (project / "secrets.yaml").write_text("wifi_ssid: office\nwifi_password: office-passphrase\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo, project / "device.yaml"


def steps_of(text):
    return yaml.safe_load(text)["jobs"]["firmware"]["steps"]


def ci_checkout(repo, tmp_path):
    """What CI sees: the repository as git has it (no pki/, no secrets.yaml, no build/)."""
    checkout = tmp_path / "ci-checkout"
    shutil.copytree(repo, checkout, ignore=shutil.ignore_patterns("pki", "build", "secrets.yaml", ".git"))
    return checkout


# ---------------------------------------------------------------------------------------------- the workflow


def test_the_workflow_caches_platformio_installs_gen_builds_the_fleet_without_the_pki_and_uploads_each_device(tmp_path):
    repo, spec_path = fleet_repo(tmp_path)
    spec = load_spec(spec_path)
    relative, text = render_github_workflow(spec, repo)
    assert relative == ".github/workflows/sensorfleet-firmware.yml"
    steps = steps_of(text)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == "~/.platformio"
    assert any(s.get("run", "").startswith("pip install esp32-mqtt-gen") for s in steps)
    build = next(s for s in steps if s.get("run", "").startswith("gen build"))
    assert build["run"] == 'gen build "projects/fleet/device.yaml" --out "projects/fleet/build" --without-pki'
    uploads = [s["with"] for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert [u["name"] for u in uploads] == [f"sensorfleet-{d.id}" for d in spec.devices]
    assert uploads[0]["path"] == "projects/fleet/build/artifacts/sensor-01/"


def test_an_nvs_fleets_workflow_reads_no_secret_at_all_and_says_no_artifact_carries_one(tmp_path):
    repo, spec_path = fleet_repo(tmp_path)
    _relative, text = render_github_workflow(load_spec(spec_path), repo)
    assert "${{ secrets." not in text and "Restore the PKI" not in text
    assert "It needs no secret at all." in text and "YES" not in text
    assert "no: sensor-01, sensor-02" in text and "--artifacts DIR" in text


def test_an_embed_fleets_workflow_names_the_artifacts_that_carry_secrets_and_reads_only_device_credentials(tmp_path):
    repo, spec_path = embed_repo(tmp_path)
    _relative, text = render_github_workflow(load_spec(spec_path), repo)
    assert "YES: node-000, node-001. Their firmware.bin and factory.bin hold" in text
    steps = steps_of(text)
    secrets_step = next(s for s in steps if s.get("name") == "Write secrets.yaml from the secret store")
    assert secrets_step["env"] == {"WIFI_SSID": "${{ secrets.WIFI_SSID }}",
                                   "WIFI_PASSWORD": "${{ secrets.WIFI_PASSWORD }}"}
    credentials = next(s for s in steps if s.get("name", "").startswith("Write the device credentials"))
    assert credentials["env"] == {"DEVICE_CREDENTIALS": "${{ secrets.EMBEDFLEET_DEVICE_CREDENTIALS }}"}
    build = next(s for s in steps if s.get("run", "").startswith("gen build"))
    assert build["run"].endswith('--without-pki --credentials "$RUNNER_TEMP/device-credentials.b64"')
    assert "office-passphrase" not in text


def test_the_python_that_writes_secrets_yaml_in_ci_writes_what_the_spec_reads(tmp_path):
    repo, spec_path = embed_repo(tmp_path)
    _relative, text = render_github_workflow(load_spec(spec_path), repo)
    script = next(s for s in steps_of(text) if s.get("name") == "Write secrets.yaml from the secret store")["run"]
    (spec_path.parent / "secrets.yaml").unlink()
    env = {"WIFI_SSID": "ci-ssid", "WIFI_PASSWORD": 'p@ss: "quoted" #1',
           "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"}
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


# ---------------------------------------------------------------------------------------------- secrets: nvs in CI


def test_ci_builds_an_nvs_fleets_app_images_without_pki_or_secrets_and_they_equal_the_local_ones(
        tmp_path, fake_tools, gen_cli):
    repo, spec_path = fleet_repo(tmp_path)
    assert gen_cli("generate", spec_path)[0] == 0                       # where the PKI lives
    checkout = ci_checkout(repo, tmp_path)
    ci_spec = checkout / "projects" / "fleet" / "device.yaml"
    code, _out, err = gen_cli("build", ci_spec, "--without-pki")
    assert code == 0, err
    assert not (ci_spec.parent / "pki").exists()                        # never opened, never created
    ci_out, local_out = ci_spec.parent / "build", spec_path.parent / "build"
    assert not list(ci_out.rglob("nvs.bin")) and not (ci_out / "broker").exists()
    for device in ("sensor-01", "sensor-c3"):
        firmware = f"devices/{device}/firmware"
        ci_files = {p.relative_to(ci_out / firmware): p.read_bytes() for p in (ci_out / firmware).rglob("*")
                    if p.is_file() and ".pio" not in p.parts}
        local_files = {p.relative_to(local_out / firmware): p.read_bytes() for p in (local_out / firmware).rglob("*")
                       if p.is_file() and ".pio" not in p.parts}
        assert ci_files == local_files                                   # the same app, and it holds no secret
    layout = json.loads((ci_out / "artifacts" / "sensor-01" / "flash.json").read_text())
    assert "nvs.bin" not in json.dumps(layout["images"]) and layout["nvs_offset"] == "0x9000"


def test_gen_flash_makes_a_ci_built_devices_nvs_image_where_the_pki_lives(tmp_path, fake_tools, gen_cli):
    repo, spec_path = fleet_repo(tmp_path)
    checkout = ci_checkout(repo, tmp_path)
    ci_spec = checkout / "projects" / "fleet" / "device.yaml"
    assert gen_cli("build", ci_spec, "--without-pki")[0] == 0
    downloaded = tmp_path / "downloaded-sensor-02"
    shutil.copytree(ci_spec.parent / "build" / "artifacts" / "sensor-02", downloaded)
    controller, port_fd = os.openpty()
    try:
        code, out, err = gen_cli("flash", spec_path, "--device", "sensor-02", "--artifacts", downloaded,
                                 "--port", os.ttyname(port_fd))
    finally:
        os.close(controller)
        os.close(port_fd)
    assert code == 0, err
    assert "made sensor-02's nvs.bin here" in out
    nvs = downloaded / "nvs.bin"
    assert nvs.stat().st_mode & 0o777 == 0o600
    from generator.firmware.nvs_image import KEY_DEVICE_ID, NVS_NAMESPACE
    from generator.firmware.nvs_reader import read_nvs_image

    assert read_nvs_image(nvs.read_bytes())[NVS_NAMESPACE][KEY_DEVICE_ID].text() == "sensor-02"
    flash = next(c for c in fake_tools.calls("esptool") if "write-flash" in c["argv"])
    assert flash["argv"][flash["argv"].index("0x9000") + 1] == "nvs.bin"


# ---------------------------------------------------------------------------------------------- secrets: embed in CI


def test_gen_ci_github_writes_an_embed_fleets_credentials_bundle_0600_with_no_ca_key(tmp_path, gen_cli):
    repo, spec_path = embed_repo(tmp_path)
    code, out, err = gen_cli("ci", "github", spec_path)
    assert code == 0, err
    bundle_path = spec_path.parent / "build" / "ci" / "embedfleet-device-credentials.b64"
    assert str(bundle_path) in out and "EMBEDFLEET_DEVICE_CREDENTIALS" in out
    assert bundle_path.stat().st_mode & 0o777 == 0o600 and bundle_path.parent.stat().st_mode & 0o777 == 0o700
    bundle = decode_bundle(bundle_path.read_text(), str(bundle_path))
    assert sorted(bundle.devices) == ["node-000", "node-001"]
    ca_keys = [spec_path.parent / "pki" / "private" / name for name in ("ca-key.pem", "issuing-ca-key.pem")]
    decoded = json.dumps({d: vars(c) for d, c in bundle.devices.items()}, default=str)
    for key_file in ca_keys:
        body = [line for line in key_file.read_text().splitlines() if "-----" not in line]
        assert not any(line in decoded for line in body)


def test_a_ci_build_of_an_embed_device_missing_from_the_bundle_fails_and_issues_nothing(tmp_path, fake_tools, gen_cli):
    repo, spec_path = embed_repo(tmp_path)
    assert gen_cli("ci", "github", spec_path)[0] == 0
    bundle = spec_path.parent / "build" / "ci" / "embedfleet-device-credentials.b64"
    spec_path.write_text(spec_path.read_text() + "  - id: node-new\n")   # added after the bundle was made
    checkout = ci_checkout(repo, tmp_path)
    ci_spec = checkout / "projects" / "embed" / "device.yaml"
    shutil.copy(spec_path.parent / "secrets.yaml", ci_spec.parent / "secrets.yaml")   # as the workflow writes it
    code, _out, err = gen_cli("build", ci_spec, "--without-pki", "--credentials", bundle)
    assert code == 2 and "device node-new is not in the credentials bundle" in err and "never issues" in err
    assert not (ci_spec.parent / "pki").exists() and not fake_tools.pio_runs()


def test_a_ci_build_with_the_bundle_embeds_exactly_the_bundled_credentials(tmp_path, fake_tools, gen_cli):
    repo, spec_path = embed_repo(tmp_path)
    assert gen_cli("ci", "github", spec_path)[0] == 0
    bundle = spec_path.parent / "build" / "ci" / "embedfleet-device-credentials.b64"
    checkout = ci_checkout(repo, tmp_path)
    ci_spec = checkout / "projects" / "embed" / "device.yaml"
    shutil.copy(spec_path.parent / "secrets.yaml", ci_spec.parent / "secrets.yaml")
    code, _out, err = gen_cli("build", ci_spec, "--without-pki", "--credentials", bundle)
    assert code == 0, err
    assert not (ci_spec.parent / "pki").exists()
    local_cert = (spec_path.parent / "pki" / "devices" / "node-000.pem").read_text()
    header = (ci_spec.parent / "build" / "devices" / "node-000" / "firmware" / "include" / "gen_credentials.h").read_text()
    assert local_cert.splitlines()[1] in header


def test_a_bundle_over_githubs_48_kb_limit_fails_clearly_says_how_to_split_and_writes_nothing(tmp_path, gen_cli):
    repo, spec_path = embed_repo(tmp_path, count=160)   # about 350 bytes each: some 135 fit
    code, _out, err = gen_cli("ci", "github", spec_path)
    assert code == 2 and "more than the 48 KB GitHub allows in one secret" in err
    assert "split the fleet into specs of at most" in err and "secrets: nvs" in err
    assert not (repo / ".github").exists() and not (spec_path.parent / "build" / "ci").exists()
