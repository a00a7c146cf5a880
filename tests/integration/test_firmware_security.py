"""Secrets at rest (the spec's `security:`): what the spec allows, the sdkconfig.defaults and partition table it
renders (every option from the real Kconfig at the pinned ESP-IDF tag, with its dependencies met), and the encrypted
NVS image with its keys in pki/private/."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_fakes import credentials_for, example_devices, write_firmware_project, write_security_spec
from generator.core.errors import UserError
from generator.firmware.kconfig_audit import DERIVED_SYMBOLS, IDF_TAG, KCONFIG_OPTIONS, SOC_FACTS
from generator.firmware.nvs_image import NVS_NAMESPACE, render_nvs_image
from generator.firmware.nvs_reader import NvsFormatError, read_nvs_image
from generator.firmware.security import (
    decrypt_nvs_image,
    ensure_nvs_keys,
    nvs_keys_partition,
    nvs_keys_path,
    render_encrypted_nvs_image,
)
from generator.spec import load_spec
from generator.spec.model import Security

IDF_MIRROR = Path("/work/.mirror/espressif+esp-idf/repo")
MQTT_MIRROR = Path("/work/.mirror/espressif+esp-mqtt/repo")

def spec_with(tmp_path: Path, security: str, target: str = "esp32-espidf"):
    return write_security_spec(tmp_path, security, target, ota=True)


def secure_device():
    return example_devices("espidf-secure-ota")[0]


def rendered(device) -> dict[str, bytes]:
    """The device's generated firmware files, as gen generate writes them (firmware_fakes knows the OTA key)."""
    import tempfile
    with tempfile.TemporaryDirectory() as directory:
        root = write_firmware_project(Path(directory), device)
        return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


# --- the spec --------------------------------------------------------------------------------------------------

def test_an_empty_security_section_means_flash_encryption_in_development_mode(tmp_path):
    device = load_spec(spec_with(tmp_path, "  {}")).devices[0]
    assert device.security == Security(flash_encryption="development", secure_boot="off", nvs_encryption=False)


def test_release_mode_is_only_what_the_spec_writes(tmp_path):
    for text in ("  secure_boot: v2", "  nvs_encryption: true", "  secure_version: 2"):
        device = load_spec(spec_with(tmp_path, text)).devices[0]
        assert device.security.flash_encryption == "development"


@pytest.mark.parametrize("option, value, reason", [
    ("flash_encryption", "development", "CONFIG_SECURE_FLASH_ENC_ENABLED"),
    ("secure_boot", "v2", "CONFIG_SECURE_BOOT"),
    ("nvs_encryption", "true", "CONFIG_NVS_ENCRYPTION"),
    ("secure_version", "1", "CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK"),
])
def test_an_arduino_device_refuses_each_protection_with_the_reason_and_exit_2(tmp_path, option, value, reason):
    text = f"  flash_encryption: off\n  {option}: {value}" if option != "flash_encryption" else f"  {option}: {value}"
    path = spec_with(tmp_path, text, target="esp32-arduino")
    done = subprocess.run([sys.executable, "-m", "generator", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"security.{option}" in done.stderr and reason in done.stderr and "Arduino-ESP32 2.0.17" in done.stderr
    assert re.search(r"device\.yaml:1[0-9]:", done.stderr)          # the option's line
    assert "Traceback" not in done.stderr


def test_nvs_encryption_without_flash_encryption_is_refused_at_its_line(tmp_path):
    path = spec_with(tmp_path, "  flash_encryption: off\n  nvs_encryption: true")
    with pytest.raises(UserError) as error:
        load_spec(path)
    assert "device.yaml:11:" in str(error.value) and "nvs_keys" in str(error.value)


def test_a_secure_version_beyond_the_chips_efuse_field_is_refused(tmp_path):
    with pytest.raises(UserError) as error:
        load_spec(spec_with(tmp_path, "  secure_version: 20", target="esp32s3-espidf"))
    assert "16 bits" in str(error.value)


# --- sdkconfig.defaults against the real Kconfig ---------------------------------------------------------------

def sdkconfig_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if match := re.fullmatch(r"CONFIG_([A-Z0-9_]+)=(.*)", line):
            values[match[1]] = match[2]
        elif match := re.fullmatch(r"# CONFIG_([A-Z0-9_]+) is not set", line):
            values[match[1]] = "n"
    return values


def kconfig_value(expression: str, symbols: dict[str, str]) -> bool:
    """A Kconfig `depends on` expression (symbols, numbers, !, &&, ||, <, >=, parentheses) over `symbols`
    (absent: n)."""
    tokens = re.findall(r"\|\||&&|>=|<=|!=|[!()<>=]|[A-Za-z0-9_]+", expression)
    position = 0

    def peek():
        return tokens[position] if position < len(tokens) else None

    def take():
        nonlocal position
        position += 1
        return tokens[position - 1]

    def atom():
        if peek() == "!":
            take()
            return not atom()
        if peek() == "(":
            take()
            value = either()
            assert take() == ")"
            return value
        name = take()
        if peek() in ("<", ">=", "<=", "=", "!="):
            op, other = take(), take()
            left, right = int(symbols.get(name, "0"), 0), int(other, 0)
            return {"<": left < right, ">=": left >= right, "<=": left <= right, "=": left == right,
                    "!=": left != right}[op]
        return symbols.get(name, "n") == "y"

    def both():
        value = atom()
        while peek() == "&&":
            take()
            value = atom() and value
        return value

    def either():
        value = both()
        while peek() == "||":
            take()
            value = both() or value
        return value

    result = either()
    assert position == len(tokens), expression
    return result


def chip_symbols(chip: str, values: dict[str, str]) -> dict[str, str]:
    symbols = {name: "y" for name in SOC_FACTS[chip]}
    symbols[f"IDF_TARGET_{chip.upper()}"] = "y"
    if chip == "esp32":
        symbols["ESP32_REV_MIN_FULL"] = "300" if values.get("ESP32_REV_MIN_3") == "y" else "0"
    if chip == "esp32c3":
        symbols["ESP32C3_REV_MIN_FULL"] = "3"          # ESP32C3_REV_MIN_3 is the default at the pinned tag
    symbols.update({name: value for name, value in values.items()})
    for _ in DERIVED_SYMBOLS:                            # derived from each other: settle them
        for name, (_, expression) in DERIVED_SYMBOLS.items():
            symbols[name] = "y" if kconfig_value(expression, symbols) else "n"
    return symbols


SECURITY_CASES = [
    Security(),
    Security(flash_encryption="release", secure_boot="v2", nvs_encryption=True, secure_version=3),
    Security(flash_encryption="development", secure_boot="v2", nvs_encryption=True, secure_version=1),
    Security(flash_encryption="off", secure_boot="v2"),
    Security(flash_encryption="release", rom_download_mode="disabled"),
    Security(flash_encryption="development", rom_download_mode="enabled"),
]


@pytest.mark.parametrize("chip_target", ["esp32-espidf", "esp32s3-espidf", "esp32c3-espidf"])
@pytest.mark.parametrize("security", SECURITY_CASES, ids=lambda s: repr(s))
def test_the_generated_sdkconfig_uses_only_audited_options_with_their_real_dependencies_met(chip_target, security):
    assert_audited_sdkconfig(chip_target, security)


HMAC_CASES = [
    Security(flash_encryption="off", nvs_encryption=True, nvs_key_protection="hmac"),
    Security(flash_encryption="development", secure_boot="v2", nvs_encryption=True, nvs_key_protection="hmac",
             secure_version=1),
]


@pytest.mark.parametrize("chip_target", ["esp32s3-espidf", "esp32c3-espidf"])
@pytest.mark.parametrize("security", HMAC_CASES, ids=lambda s: repr(s))
def test_the_hmac_scheme_sdkconfig_uses_only_audited_options_with_their_real_dependencies_met(chip_target, security):
    values = assert_audited_sdkconfig(chip_target, security)
    assert values["NVS_SEC_KEY_PROTECT_USING_HMAC"] == "y" and 0 <= int(values["NVS_SEC_HMAC_EFUSE_KEY_ID"]) <= 5
    assert "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC" not in values


@pytest.mark.parametrize("chip_target", ["esp32s3-espidf", "esp32c3-espidf"])
def test_secure_download_mode_is_written_with_its_real_dependencies_met_where_the_chip_has_it(chip_target):
    values = assert_audited_sdkconfig(chip_target, Security(flash_encryption="release",
                                                            rom_download_mode="secure"))
    assert values["SECURE_ENABLE_SECURE_ROM_DL_MODE"] == "y"


def assert_audited_sdkconfig(chip_target: str, security: Security) -> dict[str, str]:
    from generator.spec.catalogue import load_catalogue
    base = secure_device()
    target = load_catalogue()[chip_target]
    device = replace(base, target=target, security=security)
    values = sdkconfig_values(rendered(device)["sdkconfig.defaults"].decode())
    unknown = set(values) - set(KCONFIG_OPTIONS)
    assert not unknown, f"options not in generator.firmware.kconfig_audit: {unknown}"
    symbols = chip_symbols(device.chip, values)
    for name, value in values.items():
        if value == "n":
            continue
        for expression in KCONFIG_OPTIONS[name].depends:
            assert kconfig_value(expression, symbols), f"CONFIG_{name} needs {expression} on {device.chip}"
    chosen: dict[str, list[str]] = {}
    for name, value in values.items():
        if value == "y" and KCONFIG_OPTIONS[name].choice:
            chosen.setdefault(KCONFIG_OPTIONS[name].choice, []).append(name)
    assert all(len(members) == 1 for members in chosen.values()), chosen
    return values


def test_release_flash_encryption_is_written_as_release_and_never_with_virtual_efuses():
    device = replace(secure_device(), security=Security(flash_encryption="release"))
    values = sdkconfig_values(rendered(device)["sdkconfig.defaults"].decode())
    assert values["SECURE_FLASH_ENCRYPTION_MODE_RELEASE"] == "y"
    assert "SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT" not in values and "EFUSE_VIRTUAL" not in values


def test_without_security_the_sdkconfig_and_partitions_are_as_before():
    device = replace(secure_device(), security=None)
    files = rendered(device)
    assert "SECURE_FLASH_ENC" not in files["sdkconfig.defaults"].decode()
    assert "nvs,      data, nvs,     0x9000," in files["partitions.csv"].decode()


def _kconfig_file(option) -> list[str]:
    if option.path.startswith("components/mqtt/esp-mqtt/"):
        repo, rev, path = MQTT_MIRROR, "6af4446a48ea7fa54948edc4e62277ed70abb6e1", option.path.removeprefix(
            "components/mqtt/esp-mqtt/")
    else:
        repo, rev, path = IDF_MIRROR, IDF_TAG, option.path
    return subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


@pytest.mark.skipif(not (IDF_MIRROR / "HEAD").exists() or not (MQTT_MIRROR / "HEAD").exists(),
                    reason="needs a git checkout of espressif/esp-idf and esp-mqtt (the audit's source)")
def test_each_audited_option_is_declared_at_its_recorded_line_with_its_recorded_dependencies():
    for option in KCONFIG_OPTIONS.values():
        lines = _kconfig_file(option)
        assert lines[option.line - 1].strip() == f"config {option.name}", option.source
        own = []
        for line in lines[option.line:]:
            text = line.strip()
            if re.match(r"(config|choice|endchoice|menu|endmenu|if|endif)\b", text):
                break
            if text.startswith("depends on "):
                own.append(text.removeprefix("depends on "))
        assert set(own) <= set(option.depends), (option.name, own)
    for name, (source, expression) in DERIVED_SYMBOLS.items():
        path, line = source.rsplit(":", 1)
        lines = subprocess.run(["git", "-C", str(IDF_MIRROR), "show", f"{IDF_TAG}:{path}"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        assert lines[int(line) - 1].strip() == f"config {name}"
    for chip, facts in SOC_FACTS.items():
        for name, source in facts.items():
            path, line = source.rsplit(":", 1)
            lines = subprocess.run(["git", "-C", str(IDF_MIRROR), "show", f"{IDF_TAG}:{path}"], capture_output=True,
                                   text=True, check=True).stdout.splitlines()
            assert lines[int(line) - 1].strip() == f"config {name}"
            assert lines[int(line) + 1].strip() == "default y", (chip, name)


# --- the partition table -----------------------------------------------------------------------------------------

def partitions(text: str) -> list[list[str]]:
    return [[field.strip() for field in line.split(",")] for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_partition_table_leaves_room_for_the_bigger_bootloader_and_holds_an_encrypted_nvs_keys_partition():
    files = rendered(secure_device())
    rows = partitions(files["partitions.csv"].decode())
    table_offset = int(sdkconfig_values(files["sdkconfig.defaults"].decode())["PARTITION_TABLE_OFFSET"], 16)
    spans = sorted((int(row[3], 16), int(row[3], 16) + int(row[4], 16), row[0]) for row in rows)
    assert spans[0][0] >= table_offset + 0x1000                # nothing overlaps the partition table
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # nor each other
    keys = next(row for row in rows if row[0] == "nvs_keys")
    assert keys[1:3] == ["data", "nvs_keys"] and keys[5] == "encrypted" and int(keys[4], 16) == 0x1000
    assert next(row for row in rows if row[0] == "nvs")[5] == ""   # NVS encryption is not flash encryption
    assert "#define NVS_PARTITION_OFFSET 0x10000" in files["components/gen_config/include/gen_config.h"].decode()


# --- the encrypted NVS image ---------------------------------------------------------------------------------------

SECRETS_OF = ("wifi_pass", "key_pem")


def test_decrypted_with_its_keys_the_nvs_image_holds_the_devices_credentials(tmp_path):
    device = secure_device()
    credentials = credentials_for(device)
    keys = ensure_nvs_keys(tmp_path / "private", device.id)
    image = render_encrypted_nvs_image(device, credentials, keys)
    values = read_nvs_image(decrypt_nvs_image(image, keys))[NVS_NAMESPACE]
    assert values["wifi_pass"].text() == device.wifi.password
    assert values["key_pem"].value == credentials.key_pem + b"\0"
    assert values["cert_pem"].value == credentials.cert_pem + b"\0"
    assert values["device_id"].text() == device.id


def test_without_its_keys_the_nvs_image_shows_no_secret(tmp_path):
    device = secure_device()
    credentials = credentials_for(device)
    image = render_encrypted_nvs_image(device, credentials, ensure_nvs_keys(tmp_path / "private", device.id))
    plain = render_nvs_image(device, credentials)
    assert device.wifi.password.encode() in plain                # the same search finds them in a plain image
    for secret in (device.wifi.password.encode(), credentials.key_pem[40:80], b"PRIVATE KEY", b"BEGIN CERT",
                   device.id.encode(), b"wifi_pass"):
        assert secret not in image


def test_the_wrong_keys_or_a_plain_image_fail_as_on_the_board(tmp_path):
    device = secure_device()
    credentials = credentials_for(device)
    image = render_encrypted_nvs_image(device, credentials, ensure_nvs_keys(tmp_path / "private", device.id))
    other = nvs_keys_partition(b"\x11" * 32, b"\x22" * 32)
    with pytest.raises(NvsFormatError):
        read_nvs_image(decrypt_nvs_image(image, other))
    with pytest.raises(NvsFormatError):
        read_nvs_image(decrypt_nvs_image(render_nvs_image(device, credentials), other))


def test_the_nvs_keys_are_made_once_0600_in_a_0700_folder_and_never_replaced(tmp_path):
    private = tmp_path / "private"
    first = ensure_nvs_keys(private, "shed-01")
    path = nvs_keys_path(private, "shed-01")
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert ensure_nvs_keys(private, "shed-01") == first
    assert len(first) == 0x1000 and first[:64] != b"\xff" * 64


def test_gen_generate_writes_an_encrypted_nvs_bin_and_keeps_its_keys_out_of_build(tmp_path):
    import shutil
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent.parent.parent / "projects/examples/espidf-secure-ota", project)
    done = subprocess.run([sys.executable, "-m", "generator", "generate", str(project / "device.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    device = load_spec(project / "device.yaml").devices[0]
    keys = (project / "pki/private/nvs-keys" / f"{device.id}.bin").read_bytes()
    image = (project / "build/devices" / device.id / "nvs.bin").read_bytes()
    assert device.wifi.password.encode() not in image and b"PRIVATE KEY" not in image
    values = read_nvs_image(decrypt_nvs_image(image, keys))[NVS_NAMESPACE]
    assert values["wifi_pass"].text() == device.wifi.password
    for path in (project / "build").rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            assert keys[:32] not in content and keys[32:64] not in content and keys[:32].hex() not in content.decode(
                "latin-1"), path
    assert keys[:64].hex() not in done.stdout + done.stderr


def test_gen_inspect_and_gen_doctor_say_what_protects_a_devices_build(tmp_path):
    import json
    import shutil
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent.parent.parent / "projects/examples/espidf-secure-ota", project)
    spec = project / "device.yaml"
    subprocess.run([sys.executable, "-m", "generator", "generate", str(spec)], check=True, capture_output=True,
                   timeout=300)
    device = load_spec(spec).devices[0]
    device_dir = project / "build/devices" / device.id

    def inspect(path: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "generator", "inspect", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    assert ("flash encryption development, Secure Boot V2" in inspect(device_dir / "firmware/sdkconfig.defaults")
            and "anti-rollback at eFuse secure version 1" in inspect(device_dir / "firmware/sdkconfig.defaults"))
    assert "encrypted entries" in inspect(device_dir / "nvs.bin")
    plain = tmp_path / "plain.bin"
    plain.write_bytes(render_nvs_image(device, credentials_for(device)))
    assert "plain NVS image" in inspect(plain)
    done = subprocess.run([sys.executable, "-m", "generator", "doctor", str(spec), "--broker", "127.0.0.1:1",
                           "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert "flash encryption development" in report["protection_at_rest"]
    assert "NVS image with encrypted entries" in report["protection_at_rest"]


def test_gen_inspect_and_gen_doctor_say_the_hmac_peripheral_protects_the_nvs_keys_of_an_s3_build(tmp_path):
    import json
    import shutil
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent.parent.parent / "projects/examples/espidf-secure-ota", project)
    spec = project / "device.yaml"
    spec.write_text(spec.read_text().replace("target: esp32-espidf", "target: esp32s3-espidf"))
    subprocess.run([sys.executable, "-m", "generator", "generate", str(spec)], check=True, capture_output=True,
                   timeout=300)
    device = load_spec(spec).devices[0]
    sdkconfig = project / "build/devices" / device.id / "firmware/sdkconfig.defaults"
    done = subprocess.run([sys.executable, "-m", "generator", "inspect", str(sdkconfig)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "keys derived by the HMAC peripheral from the key in eFuse BLOCK_KEY2" in " ".join(done.stdout.split())
    done = subprocess.run([sys.executable, "-m", "generator", "doctor", str(spec), "--broker", "127.0.0.1:1",
                           "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert "HMAC peripheral" in report["protection_at_rest"] and "nvs_keys)" not in report["protection_at_rest"]
