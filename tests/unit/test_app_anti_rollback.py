"""The eFuse secure version of app anti-rollback (security.secure_version): an image's esp_app_desc_t carries it, and
the simulated bootloader built with CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK starts no image below the chip's eFuse and
raises a blank chip's eFuse on the first boot after a USB flash; built without it, it leaves the eFuse alone."""

from __future__ import annotations

import pytest

from generator.core.app_image import read_image
from generator.simulate.bootloader import (OTADATA_ENTRY, STATE_VALID, BootError, OtaEntry, SimulatedFlash, boot,
                                           otadata_crc, pack_host_image, read_efuse_secure_version, write_flash)

# ota_0 and ota_1 without a factory app, as anti-rollback wants (components/bootloader/Kconfig.app_rollback:39).
PARTITIONS = """\
nvs,      data, nvs,     0x9000,  0x5000,
otadata,  data, ota,     0xe000,  0x2000,
ota_0,    app,  ota_0,   0x10000, 0x100000,
ota_1,    app,  ota_1,   0x110000,0x100000,
"""


def host_image(tmp_path, secure_version: int) -> bytes:
    program = tmp_path / "firmware"
    program.write_bytes(b"\x7fELF host build " * 64)
    return pack_host_image(program, chip="esp32", version="1.3.0", secure_version=secure_version)


def flashed(tmp_path, secure_version: int, *, anti_rollback: bool = True, efuse: int | None = None) -> SimulatedFlash:
    """A board just flashed by USB with an image of `secure_version`; its chip's eFuse at `efuse` (None: blank)."""
    flash = SimulatedFlash(tmp_path / "board" / "flash.bin", "esp32", anti_rollback=anti_rollback)
    write_flash(flash.path, partitions_csv=PARTITIONS, app_image=host_image(tmp_path, secure_version))
    if efuse is not None:
        flash.efuse_secure_version.write_text(f"{efuse}\n")
    return flash


def test_an_images_app_description_carries_the_secure_version_it_was_built_with(tmp_path):
    assert read_image(host_image(tmp_path, 3)).secure_version == 3


def test_the_simulated_bootloader_starts_no_image_below_the_chips_efuse_secure_version(tmp_path):
    with pytest.raises(BootError, match=r"ota_0: its secure version 1 is below this chip's 2 \(eFuse\)"):
        boot(flashed(tmp_path, 1, efuse=2))


def test_the_first_boot_after_a_usb_flash_raises_a_blank_chips_efuse_to_the_images_secure_version(tmp_path):
    flash = flashed(tmp_path, 2)
    assert read_efuse_secure_version(flash) == 0
    boot(flash)
    assert read_efuse_secure_version(flash) == 2
    assert oct(flash.efuse_secure_version.stat().st_mode & 0o777) == oct(0o600)


def test_a_bootloader_built_without_anti_rollback_neither_checks_nor_raises_the_efuse(tmp_path):
    flash = flashed(tmp_path, 1, anti_rollback=False, efuse=2)
    assert boot(flash).slot == "ota_0"
    assert read_efuse_secure_version(flash) == 2


def test_an_otadata_entry_whose_image_is_below_the_chips_efuse_is_passed_over_for_the_other_slot(tmp_path):
    flash = flashed(tmp_path, 2, efuse=2)                                      # ota_0: secure version 2
    data = bytearray(flash.path.read_bytes())
    older = host_image(tmp_path, 1)
    data[0x110000:0x110000 + len(older)] = older                               # ota_1: secure version 1, newer seq
    for index, seq in ((0, 1), (1, 2)):
        entry = OtaEntry(seq, b"\xff" * 20, STATE_VALID, otadata_crc(seq))
        data[0xe000 + index * 0x1000:0xe000 + index * 0x1000 + OTADATA_ENTRY.size] = entry.pack()
    flash.path.write_bytes(bytes(data))
    chosen = boot(flash)
    assert (chosen.slot, chosen.words) == ("ota_0", "1.3.0 (valid)")
