"""CI for an OTA project (issue 26, item 9): the committed workflow holds no path of this machine and says its
images are unsigned and how they reach the devices; `gen ota publish --image ARTIFACT` signs an unsigned image on
the machine with the PKI (real espsecure, verified), and refuses without the key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES_DIR
from generator.ci.workflow import write_github_workflow
from generator.core.errors import UserError
from generator.ota.ci_image import signed_for_publish
from generator.core.app_image import VERSION_RECORD_BEGIN, VERSION_RECORD_END, VERSION_RECORD_TEXT
from generator.pki.ota_signing import ensure_signing_key, signature_problem, signing_key
from generator.output.generate import generate
from generator.pki.layout import PkiLayout
from generator.simulate.bootloader import pack_host_image
from generator.spec import load_spec


def unsigned_artifact(tmp_path: Path, version: str = "1.3.0") -> Path:
    """An app image as CI builds it: unsigned, with the version record an Arduino image of gen's firmware carries."""
    program = tmp_path / "artifact" / "program"
    program.parent.mkdir()
    record = VERSION_RECORD_BEGIN + version.encode().ljust(VERSION_RECORD_TEXT, b"\0") + VERSION_RECORD_END
    program.write_bytes(Path("/bin/true").read_bytes() + record)
    image = tmp_path / "artifact" / "firmware.bin"
    image.write_bytes(pack_host_image(program, chip="esp32", version=version))
    return image


def test_an_unsigned_ci_image_is_signed_with_the_projects_key_on_the_pki_machine(tmp_path):
    key = ensure_signing_key(PkiLayout(tmp_path / "pki"))
    image = unsigned_artifact(tmp_path)
    assert signature_problem(image, key) is not None
    signed, signed_now = signed_for_publish(image, key, tmp_path / "build", "greenhouse-ota-01")
    assert signed_now and signed != image
    assert signature_problem(signed, key) is None


def test_an_unsigned_ci_image_without_the_signing_key_here_is_refused_naming_where_to_publish(tmp_path):
    image = unsigned_artifact(tmp_path)
    with pytest.raises(UserError) as refused:
        signed_for_publish(image, signing_key(PkiLayout(tmp_path / "pki")), tmp_path / "build", "greenhouse-ota-01")
    assert "where the PKI lives" in str(refused.value)


def test_the_workflow_of_an_ota_project_holds_no_local_path_and_says_how_its_images_reach_devices(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    project = repo / "ota"
    shutil.copytree(EXAMPLES_DIR / "arduino-ota", project, ignore=shutil.ignore_patterns("pki", "build"))
    spec_path = project / "device.yaml"
    spec_path.write_text(spec_path.read_text().replace("secrets: nvs", "secrets: embed"))
    spec = load_spec(spec_path)
    generate(spec, project / "build")
    workflow, _, _ = write_github_workflow(spec)
    text = workflow.read_text()
    assert str(tmp_path) not in text
    assert "NOT signed" in text and "gen ota publish ota/device.yaml --device ID --image firmware.bin --sign" in text


def test_gen_ota_publish_sign_signs_a_ci_artifact_and_announces_it_on_the_real_broker(tmp_path, capsys,
                                                                                      start_broker):
    from generator.cli import main

    project = tmp_path / "ota"
    shutil.copytree(EXAMPLES_DIR / "arduino-ota", project, ignore=shutil.ignore_patterns("pki", "build"))
    spec = load_spec(project / "device.yaml")
    generate(spec, project / "build")
    broker = start_broker(project / "build" / "broker")
    image = unsigned_artifact(tmp_path, spec.devices[0].firmware_version)    # CI built the spec's version
    with pytest.raises(SystemExit) as done:
        main(["ota", "publish", str(spec.path), "--device", spec.devices[0].id, "--image", str(image), "--sign",
              "--broker", f"{broker.host}:{broker.port}"])
    output = capsys.readouterr()
    assert done.value.code == 0, output.err
    assert "it came unsigned" in output.out and f"announced {spec.devices[0].firmware_version}" in output.out
