"""Flashing a device whose spec has `security:` (ESP-IDF): the whole sequence as one plan of espsecure, espefuse and
esptool commands, which `gen flash` shows (`--dry-run` prints it and stops) and runs step by step.

    1. espsecure sign-data: the bootloader (and an app gen build has not signed) with the project's signing key,
       on this machine (the key never leaves pki/private/)
    2. espefuse burn-key / burn-key-digest / burn-efuse: the device's flash encryption key, the encryption config,
       the digest of the signing key (Secure Boot V2), the HMAC key the NVS encryption keys are derived from
       (nvs_key_protection: hmac: BLOCK_KEY<CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID>, purpose HMAC_UP; before the app
       first runs, or nvs_flash_init burns a random key of its own there)
                                                                    -- irreversible: needs --burn-efuses
    3. esptool write-flash --encrypt: bootloader, partition table, otadata, app, nvs_keys (encrypted by the chip
       with the key just burned; development mode lets ROM download mode do that)
    4. esptool write-flash: nvs.bin as it is (NVS encryption is not flash encryption)
    5. espefuse burn-efuse <FLASH_CRYPT_CNT|SPI_BOOT_CRYPT_CNT> 1: flash encryption on (development: the counter
       can be flipped back a few times)                            -- irreversible: needs --burn-efuses
    6. flash_encryption: release only: the counter burned full, ROM download encryption/decryption and JTAG off
                                                                    -- permanent: needs --release-irreversible too
    7. rom_download_mode: disabled / secure only, last (espefuse cannot talk to the chip after it): the UART ROM
       download mode off for good, or switched to Secure Download Mode
                                                                    -- permanent: needs --disable-download-mode
On first boot the bootloader itself burns what enables secure boot (and, with Secure Boot V2, disables JTAG and
the ROM BASIC console) and the app's secure version; `first_boot` lists these.

`pending_steps` drops the eFuse steps a chip has done already (read from `espefuse summary --format json`), so a
re-flash in development mode burns nothing and only writes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.core.errors import UserError
from generator.firmware.security import (
    APP_OFFSET,
    NVS_HMAC_KEY_ID,
    NVS_KEYS_OFFSET,
    OTADATA_OFFSET,
    PARTITION_TABLE_OFFSET,
)
from generator.spec.model import Device, Security

BURN_FLAG = "--burn-efuses"
RELEASE_FLAG = "--release-irreversible"
DOWNLOAD_FLAG = "--disable-download-mode"

# Per chip: the eFuse names of each step (esptool 5.6's espefuse; rehearsed against its virtual eFuses in tests).
_ESP32 = "esp32"


@dataclass(frozen=True)
class ChipEfuses:
    crypt_count: str                    # odd number of bits set: flash encryption on
    crypt_count_full: str               # every bit: permanently on (release)
    key_burn: tuple[str, ...]           # burn-key arguments before the key file ...
    key_purpose: tuple[str, ...]        # ... and after it
    key_block: str                      # the summary field that shows the key is there
    digest_burn: tuple[str, ...]        # burn-key-digest arguments before the public key ...
    digest_purpose: tuple[str, ...]     # ... and after it
    digest_block: str
    config: tuple[tuple[str, str], ...]    # eFuses burned with the key (before writing)
    release: tuple[tuple[str, str], ...]   # what release mode disables for good
    secure_boot_enable: str             # burned by the bootloader on first boot
    hmac: bool = True                   # has the HMAC peripheral (its key blocks take purpose HMAC_UP)
    download_disable: str = "DIS_DOWNLOAD_MODE"            # the UART ROM download mode off for good
    secure_download: str | None = "ENABLE_SECURITY_DOWNLOAD"  # Secure Download Mode (None: the chip has none)


CHIP_EFUSES = {
    "esp32": ChipEfuses(
        crypt_count="FLASH_CRYPT_CNT", crypt_count_full="0x7f",
        key_burn=("flash_encryption",), key_purpose=(), key_block="BLOCK1",
        digest_burn=(), digest_purpose=(), digest_block="BLOCK2",
        config=(("FLASH_CRYPT_CONFIG", "0xf"),),
        release=(("DISABLE_DL_ENCRYPT", "1"), ("DISABLE_DL_DECRYPT", "1"), ("DISABLE_DL_CACHE", "1"),
                 ("JTAG_DISABLE", "1")),
        secure_boot_enable="ABS_DONE_1", hmac=False, download_disable="UART_DOWNLOAD_DIS", secure_download=None),
    "esp32s3": ChipEfuses(
        crypt_count="SPI_BOOT_CRYPT_CNT", crypt_count_full="0x7",
        key_burn=("BLOCK_KEY0",), key_purpose=("XTS_AES_128_KEY",), key_block="BLOCK_KEY0",
        digest_burn=("BLOCK_KEY1",), digest_purpose=("SECURE_BOOT_DIGEST0",), digest_block="BLOCK_KEY1",
        config=(),
        release=(("DIS_DOWNLOAD_MANUAL_ENCRYPT", "1"), ("DIS_DOWNLOAD_ICACHE", "1"), ("DIS_DOWNLOAD_DCACHE", "1"),
                 ("DIS_PAD_JTAG", "1"), ("DIS_USB_JTAG", "1")),
        secure_boot_enable="SECURE_BOOT_EN"),
    "esp32c3": ChipEfuses(
        crypt_count="SPI_BOOT_CRYPT_CNT", crypt_count_full="0x7",
        key_burn=("BLOCK_KEY0",), key_purpose=("XTS_AES_128_KEY",), key_block="BLOCK_KEY0",
        digest_burn=("BLOCK_KEY1",), digest_purpose=("SECURE_BOOT_DIGEST0",), digest_block="BLOCK_KEY1",
        config=(),
        release=(("DIS_DOWNLOAD_MANUAL_ENCRYPT", "1"), ("DIS_DOWNLOAD_ICACHE", "1"), ("DIS_PAD_JTAG", "1"),
                 ("DIS_USB_JTAG", "1")),
        secure_boot_enable="SECURE_BOOT_EN"),
}


@dataclass(frozen=True)
class Step:
    tool: str                           # espsecure | espefuse | esptool
    args: tuple[str, ...]               # after the tool (and its --chip/--port)
    what: str                           # a sentence for the person flashing
    needs: str | None = None            # the confirmation flag an irreversible step needs
    efuse: str | None = None            # the eFuse (or key block) it burns, to skip it when done
    purpose: tuple[str, str] | None = None   # (KEY_PURPOSE_n, purpose) a key block must have when it is done

    def argv(self, chip: str, port: str) -> list[str]:
        if self.tool == "espsecure":
            return ["espsecure", *self.args]
        return [self.tool, "--chip", chip, "--port", port, *self.args]

    def command(self, chip: str, port: str) -> str:
        return shlex.join(self.argv(chip, port))


@dataclass(frozen=True)
class SecureFlashPlan:
    device: str
    chip: str
    steps: tuple[Step, ...]
    first_boot: tuple[str, ...]         # what the device burns itself on first boot

    def flags_needed(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(step.needs for step in self.steps if step.needs))

    def burns(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.needs)


@dataclass(frozen=True)
class PlannedImage:
    offset: int
    path: Path                          # absolute
    encrypt: bool


def hmac_key_step(hmac_key: Path) -> Step:
    """Burning the device's HMAC key where nvs_sec_provider looks for it (CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID)."""
    block = f"BLOCK_KEY{NVS_HMAC_KEY_ID}"
    return Step("espefuse", ("--do-not-confirm", "burn-key", block, str(hmac_key), "HMAC_UP"),
                f"burn the device's HMAC key ({hmac_key.name}) into {block} with purpose HMAC_UP, read- and "
                "write-protected: the chip derives the NVS encryption keys from it and nothing can read it",
                BURN_FLAG, block, (f"KEY_PURPOSE_{NVS_HMAC_KEY_ID}", "HMAC_UP"))


def _first_boot(security: Security, efuses: ChipEfuses, *, hmac_key: bool) -> tuple[str, ...]:
    """What the device burns itself on its first boot."""
    first_boot = []
    if security.secure_boot == "v2":
        first_boot.append(f"the bootloader burns {efuses.secure_boot_enable} (Secure Boot V2 on, for good), "
                          "disables JTAG and the ROM BASIC console, and write-protects the digest")
    if security.encrypts_flash and security.flash_encryption == "development":
        first_boot.append("the bootloader sees flash encryption on and leaves ROM download mode able to write "
                          "encrypted images (development)")
    if hmac_key:
        first_boot.append(f"nvs_flash_init derives the NVS encryption keys from the key in BLOCK_KEY{NVS_HMAC_KEY_ID}"
                          " (had the app run before it was burned, it would have burned a random key there and this "
                          "nvs.bin would read as empty)")
    if security.rom_download_mode is None and security.flash_encryption == "release" and efuses.secure_download:
        first_boot.append(f"the app burns {efuses.secure_download}: ROM download mode becomes Secure Download Mode "
                          "(ESP-IDF's default in release mode)")
    if security.secure_version is not None:
        first_boot.append(f"the bootloader burns the secure version {security.secure_version} into the eFuse "
                          "(bootloader_utility.c set_actual_ota_seq): an image with a lower one never boots again")
    return tuple(first_boot)


def _download_mode_steps(security: Security, efuses: ChipEfuses) -> list[Step]:
    """The UART ROM download mode, burned last: after it espefuse and encrypted writes no longer reach the chip
    (the app would burn the same bit on startup, CONFIG_SECURE_DISABLE_ROM_DL_MODE / _ENABLE_SECURE_ROM_DL_MODE)."""
    if security.rom_download_mode == "disabled":
        return [Step("espefuse", ("--do-not-confirm", "burn-efuse", efuses.download_disable, "1"),
                     f"burn {efuses.download_disable}: the UART ROM download mode is off for good (esptool and "
                     "espefuse never reach this chip again, `gen flash` included; updates only over the air)",
                     DOWNLOAD_FLAG, efuses.download_disable)]
    if security.rom_download_mode == "secure" and efuses.secure_download:
        return [Step("espefuse", ("--do-not-confirm", "burn-efuse", efuses.secure_download, "1"),
                     f"burn {efuses.secure_download}: the UART ROM download mode becomes Secure Download Mode for "
                     "good (plain flash writes only: no reads, no espefuse, no encrypted writes, so `gen flash` "
                     "cannot re-flash this chip)", DOWNLOAD_FLAG, efuses.secure_download)]
    return []


def secure_flash_plan(device: Device, *, images: tuple[tuple[int, Path], ...], flash_key: Path,
                      signing_key: Path, signing_public: Path, nvs_keys: Path | None, signed_dir: Path,
                      bootloader_offset: int, flash_args: tuple[str, ...] = (),
                      nvs_hmac_key: Path | None = None) -> SecureFlashPlan:
    """The plan that protects and flashes `device` from its built `images` ((offset, absolute path), in flash
    order, nvs.bin included); `nvs_keys`: its nvs_keys partition image, `nvs_hmac_key`: its HMAC key (whichever
    protects its NVS encryption keys). Pure: nothing runs here."""
    security = device.security
    if security is None or device.framework != "espidf":
        raise ValueError(f"device {device.id} has no ESP-IDF security: section")
    efuses = CHIP_EFUSES.get(device.chip)
    if efuses is None:
        raise UserError(f"gen flash cannot protect a {device.chip} yet (it knows the eFuses of "
                        f"{', '.join(CHIP_EFUSES)})", hint="flash it with `gen flash` after removing security:")
    steps: list[Step] = []
    planned: list[PlannedImage] = []
    for offset, path in images:
        if security.secure_boot == "v2" and (offset == bootloader_offset or (offset >= APP_OFFSET and device.ota is None
                                                                              and path.name != "nvs.bin")):
            signed = signed_dir / f"signed-{path.name}"
            steps.append(Step("espsecure", ("sign-data", "--version", "2", "--keyfile", str(signing_key),
                                            "--output", str(signed), str(path)),
                              f"sign {path.name} with the project's Secure Boot V2 key (here; the key stays in "
                              "pki/private/)"))
            path = signed
        # What the chip reads through flash encryption (esp-idf v5.5.3 components/esp_partition/partition.c:88-95):
        # the bootloader, the partition table, app partitions, otadata and nvs_keys; nvs is NVS encryption's.
        encrypt = security.encrypts_flash and (offset in (bootloader_offset, PARTITION_TABLE_OFFSET)
                                               or (device.ota is not None and offset == OTADATA_OFFSET)
                                               or (offset >= APP_OFFSET and path.name != "nvs.bin"))
        planned.append(PlannedImage(offset, path, encrypt))
    if nvs_keys is not None:
        planned.append(PlannedImage(NVS_KEYS_OFFSET, nvs_keys, True))
    planned.sort(key=lambda image: image.offset)

    if security.encrypts_flash:
        steps.append(Step("espefuse", ("--do-not-confirm", "burn-key", *efuses.key_burn, str(flash_key),
                                       *efuses.key_purpose),
                          f"burn the device's flash encryption key ({flash_key.name}) into {efuses.key_block}, "
                          "read- and write-protected: it can never be read or changed", BURN_FLAG, efuses.key_block))
        for name, value in efuses.config:
            steps.append(Step("espefuse", ("--do-not-confirm", "burn-efuse", name, value),
                              f"burn {name}={value} (flash encryption uses the whole key)", BURN_FLAG, name))
    if security.secure_boot == "v2":
        steps.append(Step("espefuse", ("--do-not-confirm", "burn-key-digest", *efuses.digest_burn,
                                       str(signing_public), *efuses.digest_purpose),
                          f"burn the digest of the project's signing key into {efuses.digest_block}: from now on "
                          "this chip boots only images signed with pki/private/ota-signing-key.pem", BURN_FLAG,
                          efuses.digest_block))
    if nvs_hmac_key is not None:
        if not efuses.hmac:
            raise UserError(f"{device.chip} has no HMAC peripheral to protect the NVS encryption keys with",
                            hint="use security.nvs_key_protection: flash_encryption")
        steps.append(hmac_key_step(nvs_hmac_key))
    encrypted = [image for image in planned if image.encrypt]
    plain = [image for image in planned if not image.encrypt]
    if encrypted:
        steps.append(Step("esptool", ("write-flash", *flash_args, "--encrypt",
                                      *[arg for image in encrypted for arg in (f"{image.offset:#x}", str(image.path))]),
                          "write " + ", ".join(image.path.name for image in encrypted) + " encrypted by the chip "
                          "with its flash encryption key"))
    if plain:
        steps.append(Step("esptool", ("write-flash", *flash_args,
                                      *[arg for image in plain for arg in (f"{image.offset:#x}", str(image.path))]),
                          "write " + ", ".join(image.path.name for image in plain) + " as they are"
                          + (" (nvs.bin is encrypted by NVS encryption already)" if security.nvs_encryption else "")))
    if security.encrypts_flash:
        steps.append(Step("espefuse", ("--do-not-confirm", "burn-efuse", efuses.crypt_count, "1"),
                          f"burn one bit of {efuses.crypt_count}: flash encryption is on (development mode can "
                          "turn it off again only a few times)", BURN_FLAG, efuses.crypt_count))
    if security.flash_encryption == "release":
        release = (*((efuses.crypt_count, efuses.crypt_count_full),), *efuses.release)
        steps.append(Step("espefuse", ("--do-not-confirm", "burn-efuse", *[part for pair in release for part in pair]),
                          "release mode, permanent: " + ", ".join(f"{name}={value}" for name, value in release)
                          + " (flash encryption can never be turned off, USB can no longer write plaintext or read "
                          "the flash, JTAG is off)", RELEASE_FLAG, "release"))
    steps += _download_mode_steps(security, efuses)
    return SecureFlashPlan(device=device.id, chip=device.chip, steps=tuple(steps),
                           first_boot=_first_boot(security, efuses, hmac_key=nvs_hmac_key is not None))


def refusal(plan: SecureFlashPlan, given: set[str]) -> UserError | None:
    """The error that stops a plan whose irreversible steps lack their confirmation flag, naming each, or None."""
    missing = [flag for flag in plan.flags_needed() if flag not in given]
    if not missing:
        return None
    lines = [f"  {step.command(plan.chip, 'PORT')}\n      {step.what}" for step in plan.burns()]
    return UserError(f"flashing {plan.device} burns eFuses, which cannot be undone:\n" + "\n".join(lines),
                     hint=f"read the README's \"Production checklist\", then run again with {' '.join(missing)} "
                          "(or --dry-run to see every command)")


def _check_purpose(step: Step, summary: dict[str, Any], done: bool) -> None:
    """A key block gen needs that holds a key for something else is an error, not a step done."""
    if step.purpose is None:
        return
    name, wanted = step.purpose
    purpose = summary.get(name, {}).get("value")
    if (done or purpose not in (None, "USER")) and purpose != wanted:
        raise UserError(f"{step.efuse} of this chip holds a key of purpose {purpose}, not {wanted}; gen burns the "
                        f"device's {wanted} key there (CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID={NVS_HMAC_KEY_ID})",
                        hint="flash a chip whose key block is free, or use security.nvs_key_protection: "
                             "flash_encryption")


def pending_steps(plan: SecureFlashPlan, summary: dict[str, Any]) -> tuple[Step, ...]:
    """The plan's steps a chip still needs, given its `espefuse summary --format json`: a key block that holds a
    key, an eFuse already at its value, a crypt counter already odd are not burned again."""
    pending = []
    for step in plan.steps:
        if step.efuse is None or step.efuse == "release":
            pending.append(step)
            continue
        field = summary.get(step.efuse, {})
        value = field.get("value")
        if step.efuse.startswith("BLOCK"):
            done = isinstance(value, str) and value.replace("00", "").replace(" ", "").strip() not in ("", "?")
            _check_purpose(step, summary, done)
        elif step.efuse.endswith("CRYPT_CNT"):   # ESP32: a number; S3/C3: "Enable" once an odd count of bits
            done = value == "Enable" or (isinstance(value, int) and bin(value).count("1") % 2 == 1)
        else:
            target = int(step.args[-1], 0)
            done = value is True if target == 1 and isinstance(value, bool) else value == target
        if not done:
            pending.append(step)
    return tuple(pending)
