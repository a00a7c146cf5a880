"""`gen flash` with `security:`: the plan of espsecure, espefuse and esptool commands, refused without the named
confirmation flags, and its eFuse sequence rehearsed against esptool's virtual eFuses (espefuse --virt)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_fakes import example_devices
from generator.firmware_build.secure_flash import (
    BURN_FLAG,
    DOWNLOAD_FLAG,
    RELEASE_FLAG,
    pending_steps,
    refusal,
    secure_flash_plan,
)
from generator.firmware.security import (
    NVS_HMAC_KEY_ID,
    NVS_KEYS_OFFSET,
    ensure_flash_encryption_key,
    ensure_nvs_hmac_key,
    ensure_nvs_keys,
    nvs_hmac_key_path,
    nvs_keys_path,
)
from generator.spec.catalogue import load_catalogue
from generator.spec.model import Security

BIN = Path(sys.executable).parent


def device_for(target: str = "esp32-espidf", security: Security | None = None):
    device = example_devices("espidf-secure-ota")[0]
    device = replace(device, target=load_catalogue()[target])
    return replace(device, security=security) if security is not None else device


def plan_for(tmp_path: Path, device, bootloader_offset: int = 0x1000):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    for name in ("bootloader.bin", "partitions.bin", "ota_data_initial.bin", "firmware.bin", "nvs.bin"):
        (artifacts / name).write_bytes(b"\xff" * 16)
    private = tmp_path / "pki/private"
    ensure_nvs_keys(private, device.id)
    key = ensure_flash_encryption_key(private, device.id)
    signing = tmp_path / "pki/private/ota-signing-key.pem"
    public = tmp_path / "pki/ota-signing.pem"
    if not signing.exists():
        subprocess.run(["openssl", "genrsa", "-out", str(signing), "3072"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(signing), "-pubout", "-out", str(public)], check=True,
                       capture_output=True)
    images = ((bootloader_offset, artifacts / "bootloader.bin"), (0xF000, artifacts / "partitions.bin"),
              (0x10000, artifacts / "nvs.bin"), (0x17000, artifacts / "ota_data_initial.bin"),
              (0x20000, artifacts / "firmware.bin"))
    hmac = device.security is not None and device.security.nvs_keys_from_hmac
    if hmac:
        ensure_nvs_hmac_key(private, device.id)
    return secure_flash_plan(device, images=images, flash_key=key, signing_key=signing, signing_public=public,
                             nvs_keys=None if hmac else nvs_keys_path(private, device.id),
                             signed_dir=tmp_path / "signed", bootloader_offset=bootloader_offset,
                             nvs_hmac_key=nvs_hmac_key_path(private, device.id) if hmac else None)


def run_on_virtual_efuses(plan, efuse_file: Path) -> None:
    for step in plan.steps:
        if step.tool != "espefuse":
            continue
        argv = [str(BIN / "espefuse"), "--chip", plan.chip, "--virt", "--path-efuse-file", str(efuse_file),
                *step.args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (step.args, done.stdout[-2000:], done.stderr[-2000:])


def virtual_summary(chip: str, efuse_file: Path) -> dict:
    done = subprocess.run([str(BIN / "espefuse"), "--chip", chip, "--virt", "--path-efuse-file", str(efuse_file),
                           "summary", "--format", "json"], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout[done.stdout.index("{"):])


def make_esp32_revision_3(efuse_file: Path) -> None:
    """A virtual ESP32 starts as revision 0; Secure Boot V2 (RSA) needs revision 3, as espefuse checks."""
    subprocess.run([str(BIN / "espefuse"), "--chip", "esp32", "--virt", "--path-efuse-file", str(efuse_file),
                    "--do-not-confirm", "burn-efuse", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1"],
                   check=True, capture_output=True, timeout=120)


def test_the_plan_writes_what_flash_encryption_protects_with_encrypt_and_nvs_bin_as_it_is(tmp_path):
    plan = plan_for(tmp_path, device_for())
    writes = [step for step in plan.steps if step.tool == "esptool"]
    encrypted = next(step for step in writes if "--encrypt" in step.args)
    plain = next(step for step in writes if "--encrypt" not in step.args)
    assert [Path(a).name for a in encrypted.args if a.endswith(".bin")] == [
        "signed-bootloader.bin", "partitions.bin", f"{device_for().id}.bin", "ota_data_initial.bin", "firmware.bin"]
    assert f"{NVS_KEYS_OFFSET:#x}" in encrypted.args
    assert [Path(a).name for a in plain.args if a.endswith(".bin")] == ["nvs.bin"]
    assert plan.steps[0].tool == "espsecure" and plan.steps[0].args[:3] == ("sign-data", "--version", "2")


def test_every_irreversible_step_is_refused_without_its_named_flag(tmp_path):
    plan = plan_for(tmp_path, device_for())
    error = refusal(plan, set())
    assert error is not None and BURN_FLAG in error.hint and "burn-key" in str(error)
    assert "flash_encryption" in str(error) and "burn-key-digest" in str(error)
    assert refusal(plan, {BURN_FLAG}) is None
    release = plan_for(tmp_path, device_for(security=Security(flash_encryption="release", secure_boot="v2")))
    assert RELEASE_FLAG in refusal(release, {BURN_FLAG}).hint
    assert refusal(release, {BURN_FLAG, RELEASE_FLAG}) is None


def test_no_step_prints_a_key(tmp_path):
    plan = plan_for(tmp_path, device_for())
    key = (tmp_path / "pki/private/flash-encryption" / f"{plan.device}.bin").read_bytes()
    text = "\n".join(step.command(plan.chip, "/dev/ttyUSB0") + step.what for step in plan.steps)
    assert key.hex() not in text and "BEGIN" not in text


@pytest.mark.parametrize("target, bootloader", [("esp32-espidf", 0x1000), ("esp32s3-espidf", 0x0),
                                                ("esp32c3-espidf", 0x0)])
def test_the_development_sequence_burns_on_virtual_efuses_and_a_second_flash_burns_nothing(tmp_path, target,
                                                                                          bootloader):
    plan = plan_for(tmp_path, device_for(target), bootloader)
    efuses = tmp_path / "efuses.bin"
    if plan.chip == "esp32":
        make_esp32_revision_3(efuses)
    run_on_virtual_efuses(plan, efuses)
    summary = virtual_summary(plan.chip, efuses)
    crypt = summary["FLASH_CRYPT_CNT" if plan.chip == "esp32" else "SPI_BOOT_CRYPT_CNT"]["value"]
    assert crypt in (1, "Enable")
    digest = subprocess.run([str(BIN / "espsecure"), "digest-sbv2-public-key", "--keyfile",
                             str(tmp_path / "pki/ota-signing.pem"), "--output", str(tmp_path / "digest.bin")],
                            capture_output=True, text=True, timeout=120)
    assert digest.returncode == 0, digest.stderr
    block = summary["BLOCK2" if plan.chip == "esp32" else "BLOCK_KEY1"]["value"]
    assert bytes.fromhex(block.replace(" ", "")) == (tmp_path / "digest.bin").read_bytes()
    assert [step.tool for step in pending_steps(plan, summary)] == ["espsecure", "esptool", "esptool"]


@pytest.mark.parametrize("target", ["esp32-espidf", "esp32s3-espidf", "esp32c3-espidf"])
def test_the_release_sequence_names_only_efuses_the_chip_has(tmp_path, target):
    plan = plan_for(tmp_path, device_for(target, Security(flash_encryption="release", secure_boot="off")),
                    0x1000 if target.startswith("esp32-") else 0x0)
    efuses = tmp_path / "efuses.bin"
    run_on_virtual_efuses(plan, efuses)
    summary = virtual_summary(plan.chip, efuses)
    release = next(step for step in plan.steps if step.needs == RELEASE_FLAG)
    names = release.args[2::2]
    assert names and all(summary[name]["value"] not in (0, False, "Disable") for name in names), \
        {name: summary[name]["value"] for name in names}


def generated_example(tmp_path: Path, target: str = "esp32-espidf") -> tuple[Path, Path, str]:
    """The secure example (for `target`) generated in tmp_path, with an artifacts folder as `gen build` leaves it."""
    import shutil
    from generator.firmware_build.flashing import FlashImage, FlashLayout, FlashSettings
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent.parent.parent / "projects/examples/espidf-secure-ota", project)
    spec = project / "device.yaml"
    spec.write_text(spec.read_text().replace("target: esp32-espidf", f"target: {target}"))
    chip = load_catalogue()[target].chip
    subprocess.run([sys.executable, "-m", "generator", "generate", str(project / "device.yaml")], check=True,
                   capture_output=True, timeout=300)
    device_id = device_for().id
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    images = ((0x1000 if chip == "esp32" else 0x0, "bootloader.bin"), (0xF000, "partitions.bin"),
              (0x10000, "nvs.bin"),
              (0x17000, "ota_data_initial.bin"), (0x20000, "firmware.bin"))
    for _, name in images:
        (artifacts / name).write_bytes(b"\xff" * 16)
    layout = FlashLayout(device=device_id, chip=chip, settings=FlashSettings("dio", "40m", "4MB"),
                         images=tuple(FlashImage(offset, name) for offset, name in images))
    (artifacts / "flash.json").write_text(json.dumps(layout.to_json()))
    return project / "device.yaml", artifacts, device_id


def test_gen_flash_dry_run_prints_every_command_and_burns_nothing(tmp_path):
    spec, artifacts, device_id = generated_example(tmp_path)
    done = subprocess.run([sys.executable, "-m", "generator", "flash", str(spec), "--device", device_id,
                           "--artifacts", str(artifacts), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "espefuse --chip esp32 --port PORT --do-not-confirm burn-key flash_encryption" in out
    assert "burn-key-digest" in out and "--encrypt" in out and "espsecure sign-data --version 2" in out
    assert "needs --burn-efuses" in out and "ABS_DONE_1" in out
    key = spec.parent / "pki/private/flash-encryption" / f"{device_id}.bin"
    assert str(key) in " ".join(out.split()) or key.name in out
    assert not key.exists()                      # a dry run makes nothing, not even the key it would burn


def test_gen_flash_refuses_to_burn_without_the_flag_before_touching_a_port(tmp_path):
    spec, artifacts, device_id = generated_example(tmp_path)
    done = subprocess.run([sys.executable, "-m", "generator", "flash", str(spec), "--device", device_id,
                           "--artifacts", str(artifacts), "--port", "/dev/does-not-exist"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert "cannot be undone" in done.stderr and "--burn-efuses" in done.stderr and "Traceback" not in done.stderr
    key = spec.parent / "pki/private/flash-encryption" / f"{device_id}.bin"
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert key.read_bytes().hex() not in done.stdout + done.stderr


HMAC_SECURITY = Security(flash_encryption="development", secure_boot="v2", nvs_encryption=True,
                         nvs_key_protection="hmac")


@pytest.mark.parametrize("target", ["esp32s3-espidf", "esp32c3-espidf"])
def test_the_hmac_key_is_burned_on_virtual_efuses_with_purpose_hmac_up_where_the_firmware_reads_it(tmp_path, target):
    plan = plan_for(tmp_path, device_for(target, HMAC_SECURITY), 0x0)
    burn = next(step for step in plan.steps if "HMAC_UP" in step.args)
    assert burn.needs == BURN_FLAG and burn.args[2] == f"BLOCK_KEY{NVS_HMAC_KEY_ID}"
    writes = [index for index, step in enumerate(plan.steps) if step.tool == "esptool"]
    assert plan.steps.index(burn) < min(writes)          # burned before the app can run and burn its own
    efuses = tmp_path / "efuses.bin"
    run_on_virtual_efuses(plan, efuses)
    summary = virtual_summary(plan.chip, efuses)
    assert summary[f"KEY_PURPOSE_{NVS_HMAC_KEY_ID}"]["value"] == "HMAC_UP"
    block = summary[f"BLOCK_KEY{NVS_HMAC_KEY_ID}"]
    assert not block["readable"] and not block["writeable"]
    assert summary["KEY_PURPOSE_0"]["value"].startswith("XTS_AES")    # the three keys in their own blocks
    assert summary["KEY_PURPOSE_1"]["value"] == "SECURE_BOOT_DIGEST0"
    assert "burn-key" not in " ".join(arg for step in pending_steps(plan, summary) for arg in step.args)


def test_the_hmac_key_reaches_the_efuse_in_the_byte_order_the_nvs_keys_are_derived_with(tmp_path):
    plan = plan_for(tmp_path, device_for("esp32c3-espidf", HMAC_SECURITY), 0x0)
    burn = next(step for step in plan.steps if "HMAC_UP" in step.args)
    efuses = tmp_path / "efuses.bin"
    done = subprocess.run([str(BIN / "espefuse"), "--chip", plan.chip, "--virt", "--path-efuse-file", str(efuses),
                           *burn.args, "--no-read-protect"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    block = virtual_summary(plan.chip, efuses)[f"BLOCK_KEY{NVS_HMAC_KEY_ID}"]["value"]
    key = nvs_hmac_key_path(tmp_path / "pki/private", plan.device).read_bytes()
    assert bytes.fromhex(block.replace(" ", "")) == key


def test_a_key_block_holding_another_purpose_stops_the_flash_instead_of_being_skipped(tmp_path):
    from generator.core.errors import UserError
    plan = plan_for(tmp_path, device_for("esp32s3-espidf", HMAC_SECURITY), 0x0)
    efuses = tmp_path / "efuses.bin"
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x5a" * 32)
    subprocess.run([str(BIN / "espefuse"), "--chip", "esp32s3", "--virt", "--path-efuse-file", str(efuses),
                    "--do-not-confirm", "burn-key", f"BLOCK_KEY{NVS_HMAC_KEY_ID}", str(other), "USER"],
                   check=True, capture_output=True, timeout=120)
    with pytest.raises(UserError, match="holds a key of purpose USER"):
        pending_steps(plan, virtual_summary("esp32s3", efuses))


def test_without_its_flag_the_hmac_key_burn_is_refused_and_named(tmp_path):
    plan = plan_for(tmp_path, device_for("esp32s3-espidf", Security(flash_encryption="off", nvs_encryption=True,
                                                                    nvs_key_protection="hmac")), 0x0)
    error = refusal(plan, set())
    assert error is not None and "HMAC_UP" in str(error) and BURN_FLAG in error.hint
    assert [step.tool for step in plan.steps] == ["espefuse", "esptool"]   # no flash encryption: plain writes
    assert "--encrypt" not in plan.steps[1].args


def test_gen_flash_dry_run_of_an_s3_shows_the_hmac_key_burn_and_no_nvs_keys_partition(tmp_path):
    spec, artifacts, device_id = generated_example(tmp_path, "esp32s3-espidf")
    done = subprocess.run([sys.executable, "-m", "generator", "flash", str(spec), "--device", device_id,
                           "--artifacts", str(artifacts), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    key = spec.parent / "pki/private/nvs-keys" / f"{device_id}.hmac-key.bin"
    assert f"burn-key BLOCK_KEY{NVS_HMAC_KEY_ID} {key} HMAC_UP" in out and "needs --burn-efuses" in out
    assert f"{NVS_KEYS_OFFSET:#x}" not in out and f"nvs-keys/{device_id}.bin" not in out
    assert key.read_bytes().hex() not in done.stdout + done.stderr


@pytest.mark.parametrize("target, field", [("esp32-espidf", "UART_DOWNLOAD_DIS"),
                                           ("esp32s3-espidf", "DIS_DOWNLOAD_MODE"),
                                           ("esp32c3-espidf", "DIS_DOWNLOAD_MODE")])
def test_disabling_rom_download_mode_is_burned_last_on_virtual_efuses_and_only_with_its_flag(tmp_path, target, field):
    security = Security(flash_encryption="release", secure_boot="off", rom_download_mode="disabled")
    plan = plan_for(tmp_path, device_for(target, security), 0x1000 if target.startswith("esp32-") else 0x0)
    last = plan.steps[-1]
    assert last.needs == DOWNLOAD_FLAG and last.args[-2:] == (field, "1")
    assert DOWNLOAD_FLAG in refusal(plan, {BURN_FLAG, RELEASE_FLAG}).hint
    assert refusal(plan, {BURN_FLAG, RELEASE_FLAG, DOWNLOAD_FLAG}) is None
    efuses = tmp_path / "efuses.bin"
    if plan.chip == "esp32":
        make_esp32_revision_3(efuses)
    run_on_virtual_efuses(plan, efuses)
    summary = virtual_summary(plan.chip, efuses)
    assert summary[field]["value"] in (True, 1)


@pytest.mark.parametrize("target", ["esp32s3-espidf", "esp32c3-espidf"])
def test_secure_download_mode_is_burned_last_on_virtual_efuses(tmp_path, target):
    security = Security(flash_encryption="development", rom_download_mode="secure")
    plan = plan_for(tmp_path, device_for(target, security), 0x0)
    assert plan.steps[-1].needs == DOWNLOAD_FLAG
    efuses = tmp_path / "efuses.bin"
    run_on_virtual_efuses(plan, efuses)
    assert virtual_summary(plan.chip, efuses)["ENABLE_SECURITY_DOWNLOAD"]["value"] is True
