"""The ESP-IDF app image format, as the bootloader, esp_image_verify and esptool read it (esp-idf v5.5.3
components/bootloader_support/include/esp_app_format.h, components/esp_app_format/include/esp_app_desc.h):

    esp_image_header_t (24 bytes)        magic 0xE9, segment count, flash mode/size, entry, wp pin, chip id, chip revs,
                                         hash_appended
    segment 0: esp_image_segment_header_t + esp_app_desc_t (256 bytes, magic 0xABCD5432, version, project name ...)
    segments 1..n
    zero padding, a checksum byte (0xEF xor every segment byte) ending on a 16-byte boundary
    SHA-256 of everything before it (when hash_appended)
    [signed] 0xFF padding to 4 KB, then a 4 KB signature sector (generator.pki.ota_signing)

`read_image` parses an image (what `gen ota publish` checks before announcing one); `pack_app_image` lays one out
from segments (the simulation packs the host build of the firmware into one, so a simulated device fetches, checks
and boots a real app image).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

IMAGE_MAGIC = 0xE9                       # ESP_IMAGE_HEADER_MAGIC, esp_app_format.h:76
APP_DESC_MAGIC = 0xABCD5432              # ESP_APP_DESC_MAGIC_WORD, esp_app_desc.h:21
CHECKSUM_MAGIC = 0xEF                    # ESP_ROM_CHECKSUM_INITIAL
SECTOR_SIZE = 0x1000
HEADER = struct.Struct("<BBBBIB3sHBHH4sB")          # esp_image_header_t, esp_app_format.h:81-107
SEGMENT_HEADER = struct.Struct("<II")               # esp_image_segment_header_t, esp_app_format.h:117-120
# esp_app_desc_t (esp_app_desc.h:26-41): magic, secure_version, reserv1[2], version[32], project_name[32], time[16],
# date[16], idf_ver[32], app_elf_sha256[32], min_efuse_blk_rev_full, max_efuse_blk_rev_full, mmu_page_size,
# reserv3[3], reserv2[18]: 256 bytes.
APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")
APP_DESC_OFFSET = HEADER.size + SEGMENT_HEADER.size  # where esp_https_ota_get_img_desc reads it (esp_https_ota.c:597)
SPI_MODE_DIO, SPI_SPEED_40M, SPI_SIZE_4MB = 2, 0, 2
WP_PIN_DISABLED = 0xEE

# esp_chip_id_t, esp_app_format.h:19-33: what the image header says it was built for.
CHIP_IDS = {"esp32": 0x0000, "esp32s2": 0x0002, "esp32c3": 0x0005, "esp32s3": 0x0009, "esp32c2": 0x000C,
            "esp32c6": 0x000D, "esp32h2": 0x0010}
# Where each chip maps flash data (DROM, which holds esp_app_desc_t first) and flash code (IROM).
DROM_START = {"esp32": 0x3F400020, "esp32s2": 0x3F000020, "esp32c3": 0x3C000020, "esp32s3": 0x3C000020}
IROM_START = {"esp32": 0x400D0020, "esp32s2": 0x40080020, "esp32c3": 0x42000020, "esp32s3": 0x42000020}


def chip_name(chip_id: int) -> str:
    return next((name for name, value in CHIP_IDS.items() if value == chip_id), f"chip id {chip_id}")


class ImageError(ValueError):
    """The bytes are not a complete, intact app image; the message says why, in words."""


@dataclass(frozen=True)
class AppImage:
    chip_id: int
    min_chip_rev_full: int
    segments: tuple[tuple[int, bytes], ...] = field(repr=False)     # (load address, data)
    version: str
    project_name: str
    idf_ver: str
    secure_version: int                         # the anti-rollback version the eFuse is compared with
    end: int                                    # bytes of the image proper: header .. appended hash
    signed_length: int                          # what a V2 signature covers: `end` rounded up to 4 KB

    @property
    def chip(self) -> str:
        return chip_name(self.chip_id)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def read_image(data: bytes) -> AppImage:
    """Parses and checks an app image: magic, segments within the data, checksum and appended SHA-256, the app
    description. Raises ImageError saying what is wrong."""
    if len(data) < HEADER.size + SEGMENT_HEADER.size + APP_DESC.size:
        raise ImageError(f"{len(data)} bytes is too short for an app image")
    (magic, count, _mode, _speed_size, _entry, _wp, _drv, chip_id, _min_rev, min_rev_full, _max_rev, _reserved,
     hash_appended) = HEADER.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise ImageError(f"the first byte is 0x{magic:02x}, not the app image magic 0xe9")
    if not 1 <= count <= 16:
        raise ImageError(f"the header says {count} segments")
    position = HEADER.size
    segments = []
    checksum = CHECKSUM_MAGIC
    for index in range(count):
        if position + SEGMENT_HEADER.size > len(data):
            raise ImageError(f"segment {index} starts past the end of the data (cut short?)")
        address, length = SEGMENT_HEADER.unpack_from(data, position)
        position += SEGMENT_HEADER.size
        if position + length > len(data):
            raise ImageError(f"segment {index} ({length} bytes) runs past the end of the data (cut short?)")
        segment = data[position:position + length]
        for byte in segment:
            checksum ^= byte
        segments.append((address, segment))
        position += length
    position += 15 - position % 16                  # zero padding, then the checksum byte on a 16-byte boundary
    if position >= len(data):
        raise ImageError("the checksum byte is past the end of the data (cut short?)")
    if data[position] != checksum:
        raise ImageError(f"checksum 0x{data[position]:02x} does not match the segments (0x{checksum:02x}): the "
                         "image was altered")
    position += 1
    if hash_appended:
        if position + 32 > len(data):
            raise ImageError("the appended SHA-256 is past the end of the data (cut short?)")
        if hashlib.sha256(data[:position]).digest() != data[position:position + 32]:
            raise ImageError("the appended SHA-256 does not match the image: it was altered")
        position += 32
    desc = APP_DESC.unpack_from(segments[0][1]) if len(segments[0][1]) >= APP_DESC.size else None
    if desc is None or desc[0] != APP_DESC_MAGIC:
        raise ImageError("the first segment holds no esp_app_desc_t (magic 0xabcd5432): not an app image")
    return AppImage(chip_id=chip_id, min_chip_rev_full=min_rev_full, segments=tuple(segments),
                    version=_text(desc[3]), project_name=_text(desc[4]), idf_ver=_text(desc[7]),
                    secure_version=desc[1], end=position,
                    signed_length=-(-position // SECTOR_SIZE) * SECTOR_SIZE)


def app_description(*, version: str, project_name: str, idf_ver: str, elf_sha256: bytes,
                    secure_version: int = 0) -> bytes:
    """An esp_app_desc_t (256 bytes). `secure_version`: CONFIG_BOOTLOADER_APP_SECURE_VERSION of the build, 0 without
    CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK (components/esp_app_format/esp_app_desc.c:47-51)."""
    return APP_DESC.pack(APP_DESC_MAGIC, secure_version, b"", version.encode()[:31], project_name.encode()[:31], b"",
                         b"", idf_ver.encode()[:31], elf_sha256[:32], 0, 0, 0, b"", b"")


def pack_app_image(chip: str, segments: list[tuple[int, bytes]], *, min_chip_rev_full: int = 0) -> bytes:
    """An app image of these segments (the first must start with an esp_app_desc_t), laid out as esptool's
    elf2image writes it: header, segments, checksum on a 16-byte boundary, appended SHA-256. Unsigned."""
    if chip not in CHIP_IDS:
        raise ValueError(f"no chip id known for {chip!r}")
    header = HEADER.pack(IMAGE_MAGIC, len(segments), SPI_MODE_DIO, (SPI_SIZE_4MB << 4) | SPI_SPEED_40M,
                         segments[0][0], WP_PIN_DISABLED, b"\0\0\0", CHIP_IDS[chip], min_chip_rev_full // 100,
                         min_chip_rev_full, 0xFFFF, b"\0" * 4, 1)
    body = bytearray(header)
    checksum = CHECKSUM_MAGIC
    for address, data in segments:
        data = data + b"\0" * (-len(data) % 4)       # segment lengths are word multiples (esp_image_format.c)
        body += SEGMENT_HEADER.pack(address, len(data)) + data
        for byte in data:
            checksum ^= byte
    body += b"\0" * (15 - len(body) % 16)
    body.append(checksum)
    body += hashlib.sha256(body).digest()
    return bytes(body)


# The firmware version an Arduino image carries (its esp_app_desc_t is the core's, precompiled): a record the
# generated firmware keeps in .rodata (templates/gen_link/arduino/ota_version_record.h): "gen.ver\0", the version in 32
# bytes (NUL-terminated), "rev.neg\0". The device reads the same record before it switches to an update.
VERSION_RECORD_BEGIN, VERSION_RECORD_END = b"gen.ver\0", b"rev.neg\0"
VERSION_RECORD_TEXT = 32
_VERSION_CHARACTERS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+_-")


def recorded_version(data: bytes) -> str | None:
    """The version in the image's one gen version record, or None when it has none or more than one."""
    found: list[str] = []
    start = data.find(VERSION_RECORD_BEGIN)
    while start >= 0 and len(found) < 2:
        text = data[start + len(VERSION_RECORD_BEGIN):start + len(VERSION_RECORD_BEGIN) + VERSION_RECORD_TEXT]
        end = start + len(VERSION_RECORD_BEGIN) + VERSION_RECORD_TEXT
        version = text.split(b"\0", 1)[0]
        if (data[end:end + len(VERSION_RECORD_END)] == VERSION_RECORD_END and 0 < len(version) < VERSION_RECORD_TEXT
                and set(version) <= _VERSION_CHARACTERS):
            found.append(version.decode())
        start = data.find(VERSION_RECORD_BEGIN, start + 1)
    return found[0] if len(found) == 1 else None
