"""Secrets at rest on an ESP-IDF device (the spec's `security:`): the facts its sdkconfig.defaults and partition
table are rendered with, its NVS encryption keys and its encrypted NVS image.

Every sdkconfig option written here is one of generator.firmware.kconfig_audit's (the real Kconfig at IDF_TAG).

    pki/private/nvs-keys/<id>.bin          the device's NVS encryption keys: the 4 KB nvs_keys partition image
                                           (XTS-AES-256 data key, tweak key, CRC32), as nvs_partition_gen makes it
                                           (nvs_key_protection: flash_encryption)
    pki/private/nvs-keys/<id>.hmac-key.bin the device's 32-byte HMAC key, burned into eFuse BLOCK_KEY<n> with
                                           purpose HMAC_UP by `gen flash`; the NVS encryption keys are derived from
                                           it (nvs_key_protection: hmac, chips with the HMAC peripheral)
    pki/private/flash-encryption/<id>.bin  the device's flash encryption key (burned into its eFuse by `gen flash`)

Each is made once, 0600 in 0700 folders, never replaced, never copied to build/, the manifest or a log.

NVS encryption (components/nvs_flash, nvs_flash_secure_init): each 32-byte entry of a page is XTS-AES encrypted with
the entry's address in the partition (little-endian, 16 bytes) as its tweak; the page header and the entry state
bitmap stay plain. `decrypt_nvs_image` undoes it as the device does (tests, the host runtime's model, gen doctor).

The HMAC scheme (esp-idf v5.5.3 components/nvs_sec_provider/nvs_sec_provider.c:113-136, compute_nvs_keys_with_hmac):
the data key is HMAC-SHA256(eFuse key, eight little-endian uint32 EKEY_SEED), the tweak key HMAC-SHA256(eFuse key,
eight TKEY_SEED) (include/private/nvs_sec_provider_private.h:7-8), computed by the chip's HMAC peripheral with the
key in the eFuse block CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID; the keys are never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from generator.core.errors import UserError
from generator.core.files import PRIVATE_DIR_MODE, SECRET_MODE, create_file, ensure_dir
from generator.firmware.kconfig_audit import KCONFIG_OPTIONS
from generator.firmware.nvs_image import NVS_PAGE_SIZE, NVS_PARTITION_OFFSET, render_nvs_image
from generator.pki.credentials import ClientCredentials
from generator.spec.model import Device, Security

# With security on, the bootloader grows (secure boot verification, flash encryption), so the partition table moves
# from 0x8000 to PARTITION_TABLE_OFFSET and every partition before the app moves with it; the app keeps 0x20000.
PARTITION_TABLE_OFFSET = 0xF000
SECURE_NVS_OFFSET = 0x10000
NVS_KEYS_PARTITION = "nvs_keys"
NVS_KEYS_OFFSET = 0x16000
NVS_KEYS_SIZE = 0x1000                 # one flash sector: the two keys and their CRC
OTADATA_OFFSET = 0x17000               # otadata (ota:) or phy_init, right after nvs_keys
APP_OFFSET = 0x20000
NVS_KEY_BYTES = 32                     # each of the XTS-AES-256 data key and tweak key
FLASH_ENCRYPTION_KEY_BYTES = 32        # ESP32: the 256-bit flash_encryption key; S2/S3/C3: XTS-AES-128
# The HMAC scheme's eFuse key: BLOCK_KEY2 (CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID, 0-5 for BLOCK_KEY0-5); gen's flash
# encryption key takes BLOCK_KEY0 and the Secure Boot V2 digest BLOCK_KEY1 (firmware_build.secure_flash).
NVS_HMAC_KEY_ID = 2
NVS_HMAC_KEY_BYTES = 32
_EKEY_SEED = struct.pack("<8I", *[0xAEBE5A5A] * 8)
_TKEY_SEED = struct.pack("<8I", *[0xCEDEA5A5] * 8)
_FIRST_ENTRY = 64                      # a page's header (32) and state bitmap (32) stay plain
_ENTRY = 32


@dataclass(frozen=True)
class SdkconfigLine:
    name: str                          # without CONFIG_; one of kconfig_audit.KCONFIG_OPTIONS
    value: str                         # y, a number, or "" for "is not set"
    comment: str = ""

    @property
    def text(self) -> str:
        if not self.value:
            return f"# CONFIG_{self.name} is not set"
        return f"CONFIG_{self.name}={self.value}"


@dataclass(frozen=True)
class SecurityFacts:
    """What sdkconfig.defaults and partitions.csv are rendered with when the spec has `security:`."""
    flash_encryption: str
    secure_boot: bool
    nvs_encryption: bool
    nvs_keys_partition: bool           # the keys in an nvs_keys partition (flash encryption scheme), not HMAC
    secure_version: int | None
    sdkconfig: tuple[SdkconfigLine, ...]
    partition_table_offset: str
    nvs_offset: str
    nvs_keys_offset: str
    nvs_keys_size: str
    otadata_offset: str
    app_offset: str
    summary: str


def protection_summary(security: Security | None) -> str:
    """One line a person reads: what protects this device's secrets at rest (gen doctor, gen inspect, comments)."""
    if security is None or (not security.encrypts_flash and security.secure_boot == "off"
                            and not security.nvs_encryption and security.secure_version is None):
        return "no protection at rest: anyone holding the board reads its flash (and its secrets) with esptool"
    parts = [f"flash encryption {security.flash_encryption}" if security.encrypts_flash else "flash in plain text",
             "Secure Boot V2 (RSA-3072, the project's signing key)" if security.secure_boot == "v2"
             else "no secure boot",
             _nvs_summary(security)]
    if security.secure_version is not None:
        parts.append(f"anti-rollback at eFuse secure version {security.secure_version}")
    if security.rom_download_mode in ("secure", "disabled"):
        parts.append("UART ROM download mode disabled" if security.rom_download_mode == "disabled"
                     else "UART ROM download mode in Secure Download Mode")
    return ", ".join(parts)


def _nvs_summary(security: Security) -> str:
    if security.nvs_keys_from_hmac:
        return (f"NVS encrypted (XTS-AES, keys derived by the HMAC peripheral from the key in eFuse "
                f"BLOCK_KEY{NVS_HMAC_KEY_ID})")
    return "NVS encrypted (XTS-AES, keys in nvs_keys)" if security.nvs_encryption else "NVS in plain text"


def _nvs_sdkconfig(security: Security) -> list[SdkconfigLine]:
    if security.nvs_keys_from_hmac:
        return [SdkconfigLine("NVS_ENCRYPTION", "y", "NVS encryption: nvs_flash_init() derives the XTS-AES keys with "
                              "the HMAC peripheral from the key in eFuse (no nvs_keys partition) and decrypts every "
                              "entry."),
                SdkconfigLine("NVS_SEC_KEY_PROTECT_USING_HMAC", "y"),
                SdkconfigLine("NVS_SEC_HMAC_EFUSE_KEY_ID", str(NVS_HMAC_KEY_ID),
                              f"BLOCK_KEY{NVS_HMAC_KEY_ID}, purpose HMAC_UP: `gen flash` burns the device's key "
                              "there before its first boot.")]
    if security.nvs_encryption:
        return [SdkconfigLine("NVS_ENCRYPTION", "y", "NVS encryption: nvs_flash_init() reads the XTS-AES keys "
                              "from the nvs_keys partition (flash encrypted) and decrypts every entry."),
                SdkconfigLine("NVS_SEC_KEY_PROTECT_USING_FLASH_ENC", "y")]
    return []


_ROM_DOWNLOAD_OPTIONS = {
    "disabled": ("SECURE_DISABLE_ROM_DL_MODE", "UART ROM download mode: the app disables it for good on startup "
                 "(`gen flash --disable-download-mode` burns it first): no image over USB again, only over the air."),
    "secure": ("SECURE_ENABLE_SECURE_ROM_DL_MODE", "UART ROM download mode: the app switches it to Secure Download "
               "Mode for good on startup: plain flash writes only, no reads, no espefuse, no encrypted writes."),
    "enabled": ("SECURE_INSECURE_ALLOW_DL_MODE", "UART ROM download mode stays fully enabled (not for production)."),
}


def _rom_download_sdkconfig(security: Security, chip: str, *, has_rev3: bool) -> list[SdkconfigLine]:
    if security.rom_download_mode is None:
        return []
    name, comment = _ROM_DOWNLOAD_OPTIONS[security.rom_download_mode]
    lines = [SdkconfigLine(name, "y", comment)]
    if chip == "esp32" and not has_rev3:
        lines.append(SdkconfigLine("ESP32_REV_MIN_3", "y", "The ESP32 sets its ROM download mode from revision 3."))
    return lines


def security_facts(device: Device) -> SecurityFacts | None:
    """The security facts of an ESP-IDF device with `security:`, else None (Arduino refuses it in the spec)."""
    security = device.security
    if security is None or device.framework != "espidf":
        return None
    lines: list[SdkconfigLine] = [SdkconfigLine(
        "PARTITION_TABLE_OFFSET", f"{PARTITION_TABLE_OFFSET:#x}",
        "The bigger bootloader (secure boot, flash encryption) needs the room below the partition table.")]
    if security.encrypts_flash:
        mode = "RELEASE" if security.flash_encryption == "release" else "DEVELOPMENT"
        lines += [SdkconfigLine("SECURE_FLASH_ENC_ENABLED", "y", "Flash encryption: the app, the bootloader, the "
                                "partition table and nvs_keys are encrypted with the key in eFuse."),
                  SdkconfigLine(f"SECURE_FLASH_ENCRYPTION_MODE_{mode}", "y",
                                "Release: USB can no longer write plaintext or read the flash (permanent)."
                                if mode == "RELEASE" else
                                "Development: `gen flash` may write again (esptool --encrypt); not secure against "
                                "someone holding the board.")]
    if security.secure_boot == "v2":
        lines += [SdkconfigLine("SECURE_BOOT", "y", "Secure Boot V2: the bootloader boots only images signed with "
                                "the project's key (pki/private/ota-signing-key.pem)."),
                  SdkconfigLine("SECURE_BOOT_V2_ENABLED", "y"),
                  SdkconfigLine("SECURE_SIGNED_APPS_RSA_SCHEME", "y"),
                  SdkconfigLine("SECURE_BOOT_BUILD_SIGNED_BINARIES", "",
                                "The build never sees the key: gen signs the bootloader and app with espsecure.")]
        if device.chip == "esp32":
            lines.append(SdkconfigLine("ESP32_REV_MIN_3", "y", "RSA Secure Boot V2 needs an ESP32 of revision 3."))
    lines += _nvs_sdkconfig(security)
    has_rev3 = any(line.name == "ESP32_REV_MIN_3" for line in lines)
    lines += _rom_download_sdkconfig(security, device.chip, has_rev3=has_rev3)
    if security.secure_version is not None:
        lines += [SdkconfigLine("BOOTLOADER_APP_ANTI_ROLLBACK", "y", "Anti-rollback: an image whose secure "
                                "version is below the one in eFuse never boots."),
                  SdkconfigLine("BOOTLOADER_APP_SECURE_VERSION", str(security.secure_version))]
    for line in lines:
        assert line.name in KCONFIG_OPTIONS, f"{line.name} is not in generator.firmware.kconfig_audit"
    return SecurityFacts(
        flash_encryption=security.flash_encryption, secure_boot=security.secure_boot == "v2",
        nvs_encryption=security.nvs_encryption, nvs_keys_partition=security.nvs_keys_partition,
        secure_version=security.secure_version, sdkconfig=tuple(lines),
        partition_table_offset=f"{PARTITION_TABLE_OFFSET:#x}", nvs_offset=f"{SECURE_NVS_OFFSET:#x}",
        nvs_keys_offset=f"{NVS_KEYS_OFFSET:#x}", nvs_keys_size=f"{NVS_KEYS_SIZE:#x}",
        otadata_offset=f"{OTADATA_OFFSET:#x}", app_offset=f"{APP_OFFSET:#x}", summary=protection_summary(security))


def nvs_offset(device: Device) -> int:
    """Where the device's NVS partition lies: it moves with the partition table when security is on."""
    return SECURE_NVS_OFFSET if security_facts(device) is not None else NVS_PARTITION_OFFSET


# --- keys, kept in pki/private/ -------------------------------------------------------------------------------

def nvs_keys_path(private_dir: Path, device_id: str) -> Path:
    return Path(private_dir) / "nvs-keys" / f"{device_id}.bin"


def nvs_hmac_key_path(private_dir: Path, device_id: str) -> Path:
    return Path(private_dir) / "nvs-keys" / f"{device_id}.hmac-key.bin"


def flash_encryption_key_path(private_dir: Path, device_id: str) -> Path:
    return Path(private_dir) / "flash-encryption" / f"{device_id}.bin"


def nvs_keys_partition(data_key: bytes, tweak_key: bytes) -> bytes:
    """The nvs_keys partition image: the two keys, the CRC32 of both, 0xFF to the end of the sector (the layout
    nvs_flash_read_security_cfg checks, and nvs_partition_gen's generate-key writes)."""
    keys = data_key + tweak_key
    assert len(data_key) == len(tweak_key) == NVS_KEY_BYTES
    image = bytearray(b"\xff" * NVS_KEYS_SIZE)
    image[:len(keys)] = keys
    struct.pack_into("<I", image, len(keys), zlib.crc32(keys, 0xFFFFFFFF) & 0xFFFFFFFF)
    return bytes(image)


def read_nvs_keys(image: bytes) -> tuple[bytes, bytes]:
    """(data key, tweak key) of an nvs_keys partition image; refuses one whose CRC does not match, as
    nvs_flash_read_security_cfg does (ESP_ERR_NVS_CORRUPT_KEY_PART)."""
    keys = image[:2 * NVS_KEY_BYTES]
    (crc,) = struct.unpack_from("<I", image, 2 * NVS_KEY_BYTES)
    if len(image) < NVS_KEY_BYTES * 2 + 4 or zlib.crc32(keys, 0xFFFFFFFF) & 0xFFFFFFFF != crc:
        raise ValueError("the nvs_keys partition is empty or corrupt (its CRC does not match)")
    return keys[:NVS_KEY_BYTES], keys[NVS_KEY_BYTES:]


def _new_secret(path: Path, data: bytes) -> bytes:
    """The file at `path`, made with `data` if it does not exist (never replaced); 0600 in a 0700 folder."""
    ensure_dir(path.parent, PRIVATE_DIR_MODE)
    if create_file(path, data, mode=SECRET_MODE):
        return data
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(f"{path} is readable by others (mode {mode:o}); it is a device's encryption key",
                        hint=f"chmod 600 {path}")
    return path.read_bytes()


def ensure_nvs_keys(private_dir: Path, device_id: str) -> bytes:
    """The device's nvs_keys partition image: the existing one (an NVS image made before must stay readable), or a
    new one with two random 256-bit keys."""
    image = _new_secret(nvs_keys_path(private_dir, device_id),
                        nvs_keys_partition(os.urandom(NVS_KEY_BYTES), os.urandom(NVS_KEY_BYTES)))
    read_nvs_keys(image)
    return image


def ensure_nvs_hmac_key(private_dir: Path, device_id: str) -> bytes:
    """The device's HMAC key (the HMAC scheme): the existing one, or a new random 256-bit key."""
    key = _new_secret(nvs_hmac_key_path(private_dir, device_id), os.urandom(NVS_HMAC_KEY_BYTES))
    if len(key) != NVS_HMAC_KEY_BYTES:
        raise UserError(f"{nvs_hmac_key_path(private_dir, device_id)} is not a 32-byte HMAC key",
                        hint="restore the device's key from your backup")
    return key


def nvs_keys_from_hmac(hmac_key: bytes) -> tuple[bytes, bytes]:
    """(data key, tweak key) as nvs_sec_provider derives them on the device from the HMAC key in its eFuse."""
    return (hmac.new(hmac_key, _EKEY_SEED, hashlib.sha256).digest(),
            hmac.new(hmac_key, _TKEY_SEED, hashlib.sha256).digest())


def ensure_flash_encryption_key(private_dir: Path, device_id: str) -> Path:
    """The device's flash encryption key file (made once; `gen flash` burns it into the eFuse)."""
    path = flash_encryption_key_path(private_dir, device_id)
    _new_secret(path, os.urandom(FLASH_ENCRYPTION_KEY_BYTES))
    return path


# --- the encrypted NVS image ----------------------------------------------------------------------------------

NvsKeys = bytes | tuple[bytes, bytes]     # an nvs_keys partition image, or (data key, tweak key)


def xts_keys(keys: NvsKeys) -> tuple[bytes, bytes]:
    return keys if isinstance(keys, tuple) else read_nvs_keys(keys)


def render_encrypted_nvs_image(device: Device, credentials: ClientCredentials, keys: NvsKeys) -> bytes:
    """The device's NVS partition image, every entry XTS-AES encrypted with `keys` (an nvs_keys partition image or
    the derived pair)."""
    data_key, tweak_key = xts_keys(keys)
    return render_nvs_image(device, credentials, xts_key=data_key + tweak_key)


def device_nvs_keys(device: Device, private_dir: Path) -> tuple[bytes, bytes] | None:
    """The NVS encryption keys of a device whose NVS is encrypted, from its HMAC key or its nvs_keys partition (each
    made once in `private_dir`), else None."""
    if device.security is None or not device.security.nvs_encryption or device.framework != "espidf":
        return None
    if device.security.nvs_keys_from_hmac:
        return nvs_keys_from_hmac(ensure_nvs_hmac_key(private_dir, device.id))
    return read_nvs_keys(ensure_nvs_keys(private_dir, device.id))


def device_nvs_image(device: Device, credentials: ClientCredentials, nvs_keys: NvsKeys | None) -> bytes:
    """The device's nvs.bin: encrypted with `nvs_keys` when its NVS is encrypted, else plain."""
    if device.security is not None and device.security.nvs_encryption and device.framework == "espidf":
        if nvs_keys is None:
            raise AssertionError(f"device {device.id} encrypts its NVS but was given no keys")
        return render_encrypted_nvs_image(device, credentials, nvs_keys)
    return render_nvs_image(device, credentials)


def decrypt_nvs_image(image: bytes, keys: NvsKeys) -> bytes:
    """The plain NVS image of an encrypted one, decrypted as nvs_flash does with these keys: every written entry
    (state 0b10 in its page's bitmap) with its address as the tweak. Wrong keys give garbage, which the NVS
    reader then rejects by its CRCs, as the device does."""
    data_key, tweak_key = xts_keys(keys)
    out = bytearray(image)
    for page in range(0, len(image), NVS_PAGE_SIZE):
        if image[page:page + 4] == b"\xff\xff\xff\xff":
            continue
        bitmap = image[page + 32:page + 64]
        for index in range((NVS_PAGE_SIZE - _FIRST_ENTRY) // _ENTRY):
            state = (bitmap[index // 4] >> (2 * (index % 4))) & 0b11
            if state == 0b11:
                continue
            address = page + _FIRST_ENTRY + index * _ENTRY
            tweak = address.to_bytes(16, "little")
            decryptor = Cipher(algorithms.AES(data_key + tweak_key), modes.XTS(tweak)).decryptor()
            out[address:address + _ENTRY] = decryptor.update(image[address:address + _ENTRY]) + decryptor.finalize()
    return bytes(out)


# --- what a build has (gen doctor, gen inspect) ----------------------------------------------------------------

def _sdkconfig_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.startswith("CONFIG_"):
            values[name.removeprefix("CONFIG_")] = value
    return values


def _secure_version(values: dict[str, str]) -> int | None:
    if values.get("BOOTLOADER_APP_ANTI_ROLLBACK") != "y":
        return None
    return int(values.get("BOOTLOADER_APP_SECURE_VERSION") or "0", 0)    # Kconfig.app_rollback: default 0


def sdkconfig_secure_version(text: str) -> int | None:
    """The secure version a build's esp_app_desc_t carries and its bootloader compares with the eFuse, read from its
    sdkconfig(.defaults); None when it is built without CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK."""
    return _secure_version(_sdkconfig_values(text))


def sdkconfig_protection(text: str) -> str:
    """What protects a device at rest, read from its build's sdkconfig(.defaults): the options the bootloader and
    nvs_flash are built with, not what the spec says."""
    values = _sdkconfig_values(text)
    flash = ("release" if values.get("SECURE_FLASH_ENCRYPTION_MODE_RELEASE") == "y" else "development") \
        if values.get("SECURE_FLASH_ENC_ENABLED") == "y" else "off"
    return protection_summary(Security(
        flash_encryption=flash,
        secure_boot="v2" if values.get("SECURE_BOOT") == "y" and values.get("SECURE_BOOT_V2_ENABLED") == "y" else "off",
        nvs_encryption=values.get("NVS_ENCRYPTION") == "y",
        nvs_key_protection="hmac" if values.get("NVS_SEC_KEY_PROTECT_USING_HMAC") == "y" else None,
        rom_download_mode=next((mode for mode, (name, _) in _ROM_DOWNLOAD_OPTIONS.items() if values.get(name) == "y"),
                               None),
        secure_version=_secure_version(values)))


def nvs_image_protection(image: bytes) -> str | None:
    """Whether an NVS partition image is plain (its secrets readable by anyone holding the flash) or encrypted;
    None if it is no NVS image."""
    from generator.firmware.nvs_reader import NvsFormatError, read_nvs_image
    if not image or len(image) % NVS_PAGE_SIZE or image[8:9] not in (b"\xfe", b"\xff"):
        return None
    try:
        values = read_nvs_image(image)
    except NvsFormatError:
        return ("NVS image with encrypted entries (XTS-AES, NVS encryption): unreadable without the device's "
                "NVS keys (its nvs_keys partition, or the HMAC key in its eFuse)")
    keys = sum(len(namespace) for namespace in values.values())
    return f"plain NVS image: its {keys} entries (secrets included) are readable by anyone holding the flash"
