"""The simulated device's flash and bootloader, for devices that update over the air.

The flash is one file (`flash.bin`, 4 MB) laid out as on the chip: the partition table at 0x8000, otadata, the app
slots. `gen simulate` "flashes it by USB" at the start of a run: the table, erased otadata, and the host build of
the firmware packed as a real app image (esp_image_header_t, an esp_app_desc_t with the firmware's version, the
executable as a segment, checksum, SHA-256), signed with the project's key, in the first app slot. The runtime's
esp_partition/esp_ota_ops/Update read and write that file as the firmware runs (templates/host/README.md).

`boot` is the second-stage bootloader (esp-idf v5.5.3 components/bootloader_support/src/bootloader_utility.c,
bootloader_utility_get_selected_boot_partition and set_actual_ota_seq, with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE,
which both flavours' bootloaders are built with when OTA is on): an image left PENDING_VERIFY becomes ABORTED (it
reset before it confirmed itself), the valid entry with the highest sequence number wins, a NEW one becomes
PENDING_VERIFY (its trial), no valid entry boots ota_0. The chosen image is checked (magic, chip id, checksum,
hash); its executable segment is written out and started with GEN_SIM_FLASH and GEN_SIM_BOOT_SLOT. A reboot (the
runtime's exit code 3) comes back here.

A bootloader built with CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK (security.secure_version) also keeps the chip's eFuse
secure version in efuse-secure-version next to the flash, the file the runtime's esp_efuse reads
(GEN_SIM_EFUSE_SECURE_VERSION): 0 on a blank chip, never lowered, kept when the flash is written again, as an eFuse
is. An otadata entry whose image's secure_version is below it is not chosen, no image below it is started, and the
eFuse is raised to the secure_version of an image started from a VALID entry or on the first boot after a USB flash
(bootloader_utility.c:322-376, 407-461, 491-515, 579-630).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from generator.core.app_image import (
    CHIP_IDS,
    DROM_START,
    IROM_START,
    ImageError,
    app_description,
    pack_app_image,
    read_image,
)
from generator.core.errors import ToolError
from generator.core.files import PRIVATE_DIR_MODE, SECRET_MODE, ensure_dir, write_atomic
from generator.firmware_build.flashing import (
    PARTITION_TABLE_MAX_LEN,
    PARTITION_TABLE_OFFSET,
    Partition,
    parse_partition_table,
    partition_table_from_csv,
)
from generator.pki.ota_signing import SigningKey, sign_image

FLASH_SIZE = 4 * 1024 * 1024               # board_upload.flash_size of the catalogue
SECTOR = 0x1000
OTADATA_ENTRY = struct.Struct("<I20sII")    # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc
SEQ_ERASED = 0xFFFFFFFF
STATE_NEW, STATE_PENDING_VERIFY, STATE_VALID, STATE_INVALID, STATE_ABORTED, STATE_UNDEFINED = \
    0x0, 0x1, 0x2, 0x3, 0x4, 0xFFFFFFFF
STATE_WORDS = {STATE_NEW: "new", STATE_PENDING_VERIFY: "pending verify: on trial", STATE_VALID: "valid",
               STATE_INVALID: "invalid", STATE_ABORTED: "aborted", STATE_UNDEFINED: "undefined"}
TYPE_APP, TYPE_DATA = 0x00, 0x01
SUBTYPE_FACTORY, SUBTYPE_OTA_0, SUBTYPE_DATA_OTA = 0x00, 0x10, 0x00
HOST_EXECUTABLE_SEGMENT = 1                # segment 0 is the esp_app_desc_t
# The host build of a `secrets: embed` firmware holds the device's key: the flash, images and executables are
# private, as the artifacts of such a build are.
PRIVATE_EXECUTABLE = 0o700


def _write_private(path: Path, data: bytes, mode: int = SECRET_MODE) -> None:
    ensure_dir(path.parent, PRIVATE_DIR_MODE)
    write_atomic(path, data, mode=mode)


@dataclass(frozen=True)
class SimulatedFlash:
    """A device's flash file and the chip it belongs to (its images must say that chip). `anti_rollback`: its
    bootloader is built with CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK."""

    path: Path
    chip: str
    anti_rollback: bool = False

    @property
    def boot_dir(self) -> Path:
        return self.path.parent

    @property
    def efuse_secure_version(self) -> Path:
        """The chip's eFuse secure version, in decimal (GEN_SIM_EFUSE_SECURE_VERSION); absent on a blank chip."""
        return self.boot_dir / "efuse-secure-version"

    def environment(self, slot: str) -> dict[str, str]:
        """What the runtime started from `slot` of this flash is given: the flash, the slot, the chip's eFuse."""
        return {"GEN_SIM_FLASH": str(self.path), "GEN_SIM_BOOT_SLOT": slot,
                "GEN_SIM_EFUSE_SECURE_VERSION": str(self.efuse_secure_version)}


def read_efuse_secure_version(flash: SimulatedFlash) -> int:
    """esp_efuse_read_secure_version of the simulated chip: 0 on a blank one."""
    try:
        return int(flash.efuse_secure_version.read_text().strip() or "0")
    except FileNotFoundError:
        return 0


def _update_efuse_secure_version(flash: SimulatedFlash, secure_version: int) -> int:
    """esp_efuse_update_secure_version: the eFuse only grows. Returns what it holds."""
    held = read_efuse_secure_version(flash)
    if secure_version > held:
        _write_private(flash.efuse_secure_version, f"{secure_version}\n".encode())
        return secure_version
    return held


@dataclass(frozen=True)
class Boot:
    slot: str                    # the partition label the image runs from (GEN_SIM_BOOT_SLOT)
    executable: Path
    words: str                   # what the bootloader says about it, for the "[sim] boot:" line


class BootError(ToolError):
    """No app slot holds a bootable image (the chip would stop in its bootloader)."""


def pack_host_image(executable: Path, *, chip: str, version: str, project_name: str = "firmware",
                    secure_version: int = 0) -> bytes:
    """The host build of the firmware as an app image for `chip`: esp_app_desc_t in segment 0 (with the build's
    secure_version), the executable in segment 1. Unsigned."""
    program = executable.read_bytes()
    description = app_description(version=version, project_name=project_name, idf_ver="host",
                                  elf_sha256=hashlib.sha256(program).digest(), secure_version=secure_version)
    return pack_app_image(chip, [(DROM_START[chip], description), (IROM_START[chip], program)])


def signed_host_image(executable: Path, work: Path, *, chip: str, version: str, key: SigningKey,
                      secure_version: int = 0) -> Path:
    """pack_host_image, signed with the project's key: work/<version>.bin."""
    unsigned = work / f"{version}.unsigned.bin"
    _write_private(unsigned, pack_host_image(executable, chip=chip, version=version, secure_version=secure_version))
    signed = work / f"{version}.bin"
    sign_image(unsigned, signed, key)
    os.chmod(signed, SECRET_MODE)
    unsigned.unlink()
    return signed


def write_flash(path: Path, *, partitions_csv: str, app_image: bytes) -> tuple[Partition, ...]:
    """A flash as `gen flash` leaves a board: the partition table at 0x8000, otadata erased, the image in the first
    app slot, 0xFF everywhere else."""
    table = partition_table_from_csv(partitions_csv)
    partitions = parse_partition_table(table)
    first_app = next((p for p in partitions if p.type == TYPE_APP), None)
    if first_app is None or len(app_image) > first_app.size:
        raise ToolError(f"{path}: the partition table has no app slot that holds a {len(app_image)}-byte image")
    flash = bytearray(b"\xff" * FLASH_SIZE)
    flash[PARTITION_TABLE_OFFSET:PARTITION_TABLE_OFFSET + PARTITION_TABLE_MAX_LEN] = table
    flash[first_app.offset:first_app.offset + len(app_image)] = app_image
    _write_private(path, bytes(flash))
    return partitions


# ---------------------------------------------------------------------------------------------- otadata


@dataclass
class OtaEntry:
    seq: int
    label: bytes
    state: int
    crc: int

    @property
    def crc_ok(self) -> bool:
        return self.crc == otadata_crc(self.seq)

    @property
    def invalid(self) -> bool:      # bootloader_common_ota_select_invalid
        return self.seq == SEQ_ERASED or self.state in (STATE_INVALID, STATE_ABORTED)

    @property
    def valid(self) -> bool:        # bootloader_common_ota_select_valid
        return not self.invalid and self.crc_ok

    def pack(self) -> bytes:
        return OTADATA_ENTRY.pack(self.seq, self.label, self.state, self.crc)


def otadata_crc(seq: int) -> int:
    """bootloader_common_ota_select_crc: CRC32 of ota_seq, as components/app_update/otatool.py computes it."""
    return zlib.crc32(struct.pack("<I", seq), 0xFFFFFFFF)


def _read_entries(flash: bytearray, otadata: Partition) -> list[OtaEntry]:
    return [OtaEntry(*OTADATA_ENTRY.unpack_from(flash, otadata.offset + index * SECTOR)) for index in (0, 1)]


def _write_entry(flash: bytearray, otadata: Partition, index: int, entry: OtaEntry) -> None:
    start = otadata.offset + index * SECTOR
    flash[start:start + SECTOR] = b"\xff" * SECTOR
    flash[start:start + OTADATA_ENTRY.size] = entry.pack()


def _active(entries: list[OtaEntry]) -> int:
    """bootloader_common_get_active_otadata: the valid entry with the higher sequence number, or -1."""
    valid = [index for index, entry in enumerate(entries) if entry.valid]
    if len(valid) == 2:
        return 0 if entries[0].seq >= entries[1].seq else 1
    return valid[0] if valid else -1


# ---------------------------------------------------------------------------------------------- boot


def _image_problem(flash: bytearray, partition: Partition, chip: str, efuse_secure_version: int | None) -> str | None:
    """Why the bootloader would not start the image in `partition`; `efuse_secure_version`: None without
    anti-rollback."""
    try:
        image = read_image(bytes(flash[partition.offset:partition.offset + partition.size]))
    except ImageError as error:
        return str(error)
    if image.chip_id != CHIP_IDS[chip]:
        return f"the image is for {image.chip}, this device is {chip}"
    if efuse_secure_version is not None and image.secure_version < efuse_secure_version:
        return (f"its secure version {image.secure_version} is below this chip's {efuse_secure_version} (eFuse): "
                "anti-rollback")
    return None


def _secure_version_at(flash: bytearray, partition: Partition) -> int | None:
    """bootloader_common_get_partition_description: the secure_version of the image in `partition`, or None."""
    try:
        return read_image(bytes(flash[partition.offset:partition.offset + partition.size])).secure_version
    except ImageError:
        return None


def boot(flash_file: SimulatedFlash) -> Boot:
    """Chooses the image to start as the bootloader does, updates otadata as it does, and writes the chosen image's
    executable next to the flash file. Raises BootError when no slot holds a bootable image."""
    flash = bytearray(flash_file.path.read_bytes())
    partitions = parse_partition_table(
        bytes(flash[PARTITION_TABLE_OFFSET:PARTITION_TABLE_OFFSET + PARTITION_TABLE_MAX_LEN]))
    slots = [p for p in partitions if p.type == TYPE_APP and SUBTYPE_OTA_0 <= p.subtype < SUBTYPE_OTA_0 + 16]
    slots.sort(key=lambda p: p.subtype)
    factory = next((p for p in partitions if p.type == TYPE_APP and p.subtype == SUBTYPE_FACTORY), None)
    otadata = next((p for p in partitions if p.type == TYPE_DATA and p.subtype == SUBTYPE_DATA_OTA), None)
    chosen: Partition | None = factory or (slots[0] if slots else None)
    words = "factory app" if factory is not None else "no otadata"
    initial = False
    efuse = read_efuse_secure_version(flash_file) if flash_file.anti_rollback else None

    def passes_anti_rollback(partition: Partition) -> bool:      # check_anti_rollback
        secure_version = _secure_version_at(flash, partition)
        return efuse is None or (secure_version is not None and secure_version >= efuse)

    if otadata is not None and slots:
        entries = _read_entries(flash, otadata)
        for index, entry in enumerate(entries):
            if entry.state == STATE_PENDING_VERIFY:    # it reset before confirming itself: never again
                entry.state = STATE_ABORTED
                _write_entry(flash, otadata, index, entry)
        if efuse is None:
            active = -1 if all(entry.invalid for entry in entries) else _active(entries)
        elif all(e.seq == SEQ_ERASED or not e.crc_ok for e in entries):
            active = -1                                # otadata in its initial state
        else:                                          # get_active_otadata_with_check_anti_rollback
            active = _active([entry if entry.valid and passes_anti_rollback(slots[(entry.seq - 1) % len(slots)])
                              else OtaEntry(SEQ_ERASED, entry.label, entry.state, entry.crc) for entry in entries])
        if active != -1:
            entry = entries[active]
            chosen = slots[(entry.seq - 1) % len(slots)]
            if entry.state == STATE_NEW:
                entry.state = STATE_PENDING_VERIFY
                _write_entry(flash, otadata, active, entry)
            if efuse is not None and entry.state == STATE_VALID:     # update_anti_rollback
                efuse = _update_efuse_secure_version(flash_file, _secure_version_at(flash, chosen) or 0)
            words = STATE_WORDS.get(entry.state, f"state {entry.state:#x}")
        elif factory is None:
            initial = all(e.seq == SEQ_ERASED or not e.crc_ok for e in entries)
            chosen = slots[0]
            words = "otadata empty: the first slot" if initial else "no valid otadata entry: the first slot"
    # bootloader_utility_load_boot_image: the chosen partition, else any other that holds a good image.
    candidates = [p for p in [chosen, *slots, factory] if p is not None]
    problems = []
    for partition in dict.fromkeys(candidates):
        problem = _image_problem(flash, partition, flash_file.chip, efuse)
        if problem is None:
            break
        problems.append(f"{partition.label}: {problem}")
    else:
        below = any(_secure_version_at(flash, p) is not None and not passes_anti_rollback(p) for p in candidates)
        raise BootError("no app slot holds a bootable image: " + "; ".join(problems),
                        hint=f"this simulated chip's eFuse holds secure version {efuse}: build with that "
                             f"security.secure_version or more, or delete {flash_file.efuse_secure_version} for a "
                             "blank chip" if below else None)
    if partition != chosen:
        words = f"{chosen.label if chosen else 'nothing'} is not bootable ({problems[0]}); falling back"
    if initial and otadata is not None and partition in slots:   # set_actual_ota_seq: the first boot after a USB flash
        index = slots.index(partition)
        _write_entry(flash, otadata, 0, OtaEntry(index + 1, b"\xff" * 20, STATE_VALID, otadata_crc(index + 1)))
        if efuse is not None:
            efuse = _update_efuse_secure_version(flash_file, _secure_version_at(flash, partition) or 0)
    _write_private(flash_file.path, bytes(flash))
    image = read_image(bytes(flash[partition.offset:partition.offset + partition.size]))
    executable = flash_file.boot_dir / f"{partition.label}.run"
    _write_private(executable, image.segments[HOST_EXECUTABLE_SEGMENT][1], PRIVATE_EXECUTABLE)
    return Boot(slot=partition.label, executable=executable, words=f"{image.version} ({words})")
