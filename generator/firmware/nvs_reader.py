"""A small reader for NVS partition images (format version 2, as esp-idf-nvs-partition-gen writes and nvs_flash
reads): page headers, entry state bitmaps, entries, strings, blobs split into chunks, integers, every CRC32 checked.

Used by tests and `gen doctor` to see what an nvs.bin holds without a device. Read-only and strict: a CRC that does
not match raises NvsFormatError (the device would skip such an entry; a file we generated must never have one).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PAGE_SIZE = 4096
ENTRY_SIZE = 32
ENTRIES_PER_PAGE = 126
_HEADER_SIZE = 32
_BITMAP_OFFSET = 32
_FIRST_ENTRY_OFFSET = 64

PAGE_STATE_NAMES = {0xFFFFFFFF: "EMPTY", 0xFFFFFFFE: "ACTIVE", 0xFFFFFFFC: "FULL", 0xFFFFFFF8: "FREEING",
                    0xFFFFFFF0: "CORRUPT"}
PAGE_VERSION2 = 0xFE

TYPE_U8, TYPE_I8, TYPE_U16, TYPE_I16 = 0x01, 0x11, 0x02, 0x12
TYPE_U32, TYPE_I32, TYPE_U64, TYPE_I64 = 0x04, 0x14, 0x08, 0x18
TYPE_SZ, TYPE_BLOB_V1, TYPE_BLOB_DATA, TYPE_BLOB_IDX = 0x21, 0x41, 0x42, 0x48
_INT_FORMATS = {TYPE_U8: "<B", TYPE_I8: "<b", TYPE_U16: "<H", TYPE_I16: "<h",
                TYPE_U32: "<I", TYPE_I32: "<i", TYPE_U64: "<Q", TYPE_I64: "<q"}
_ENTRY_WRITTEN = 0b10


class NvsFormatError(ValueError):
    pass


@dataclass(frozen=True)
class NvsValue:
    namespace: str
    key: str
    type: int
    value: int | bytes          # integers, or the raw bytes of a string (with its NUL) or a blob (reassembled)

    def text(self) -> str:
        """A string entry's text (without the NUL)."""
        if self.type != TYPE_SZ:
            raise TypeError(f"{self.namespace}/{self.key} is not a string")
        assert isinstance(self.value, bytes)
        return self.value[:-1].decode("utf-8") if self.value.endswith(b"\0") else self.value.decode("utf-8")


def _crc32(data: bytes) -> int:
    # NVS uses the ROM crc32_le with an initial value of 0xFFFFFFFF, which is zlib's crc32 of the data.
    return zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


def _entry_states(bitmap: bytes) -> list[int]:
    return [(bitmap[i // 4] >> ((i % 4) * 2)) & 0b11 for i in range(ENTRIES_PER_PAGE)]


def read_nvs_image(image: bytes) -> dict[str, dict[str, NvsValue]]:
    """{namespace: {key: NvsValue}} of every written entry in the image."""
    if len(image) % PAGE_SIZE or not image:
        raise NvsFormatError(f"an NVS image is a whole number of {PAGE_SIZE}-byte pages, not {len(image)} bytes")
    namespaces: dict[int, str] = {0: ""}
    raw: list[tuple[int, int, int, str, bytes, bytes]] = []   # (ns, type, chunk, key, data field, payload)
    for page_index in range(len(image) // PAGE_SIZE):
        page = image[page_index * PAGE_SIZE:(page_index + 1) * PAGE_SIZE]
        state = struct.unpack_from("<I", page, 0)[0]
        if state == 0xFFFFFFFF:
            continue
        if state not in PAGE_STATE_NAMES:
            raise NvsFormatError(f"page {page_index}: unknown state {state:#x}")
        version = page[8]
        if version != PAGE_VERSION2:
            raise NvsFormatError(f"page {page_index}: version {version:#x}, only version 2 (0xfe) is read")
        header_crc = struct.unpack_from("<I", page, 28)[0]
        if _crc32(page[4:28]) != header_crc:
            raise NvsFormatError(f"page {page_index}: header CRC mismatch")
        states = _entry_states(page[_BITMAP_OFFSET:_BITMAP_OFFSET + 32])
        index = 0
        while index < ENTRIES_PER_PAGE:
            if states[index] != _ENTRY_WRITTEN:
                index += 1
                continue
            offset = _FIRST_ENTRY_OFFSET + index * ENTRY_SIZE
            entry = page[offset:offset + ENTRY_SIZE]
            ns, entry_type, span, chunk = entry[0], entry[1], entry[2], entry[3]
            crc = struct.unpack_from("<I", entry, 4)[0]
            key = entry[8:24].split(b"\0", 1)[0].decode("ascii", "replace")
            where = f"page {page_index} entry {index} ({key!r})"
            if _crc32(entry[0:4] + entry[8:32]) != crc:   # an encrypted entry read without its keys fails here
                raise NvsFormatError(f"{where}: entry CRC mismatch")
            if span < 1 or index + span > ENTRIES_PER_PAGE:
                raise NvsFormatError(f"{where}: span {span} does not fit the page")
            data_field = entry[24:32]
            payload = b""
            if entry_type in (TYPE_SZ, TYPE_BLOB_DATA, TYPE_BLOB_V1):
                size, _reserved, data_crc = struct.unpack_from("<HHI", data_field)
                start = offset + ENTRY_SIZE
                payload = page[start:start + size]
                if len(payload) != size or size > (span - 1) * ENTRY_SIZE:
                    raise NvsFormatError(f"{where}: data of {size} bytes does not fit its span {span}")
                if _crc32(payload) != data_crc:
                    raise NvsFormatError(f"{where}: data CRC mismatch")
            if ns == 0 and entry_type == TYPE_U8:
                namespaces[data_field[0]] = key
            else:
                raw.append((ns, entry_type, chunk, key, bytes(data_field), payload))
            index += span

    result: dict[str, dict[str, NvsValue]] = {}
    chunks: dict[tuple[int, str], dict[int, bytes]] = {}
    for ns, entry_type, chunk, key, data_field, payload in raw:
        if entry_type == TYPE_BLOB_DATA:
            chunks.setdefault((ns, key), {})[chunk] = payload
    for ns, entry_type, chunk, key, data_field, payload in raw:
        if ns not in namespaces:
            raise NvsFormatError(f"entry {key!r} names namespace index {ns}, which no namespace entry defines")
        namespace = namespaces[ns]
        if entry_type in _INT_FORMATS:
            fmt = _INT_FORMATS[entry_type]
            value: int | bytes = struct.unpack_from(fmt, data_field)[0]
        elif entry_type in (TYPE_SZ, TYPE_BLOB_V1):
            value = payload
        elif entry_type == TYPE_BLOB_IDX:
            total, chunk_count, chunk_start = struct.unpack_from("<IBB", data_field)
            parts = chunks.get((ns, key), {})
            try:
                value = b"".join(parts[chunk_start + i] for i in range(chunk_count))
            except KeyError:
                raise NvsFormatError(f"blob {namespace}/{key}: a chunk is missing") from None
            if len(value) != total:
                raise NvsFormatError(f"blob {namespace}/{key}: index says {total} bytes, chunks hold {len(value)}")
            entry_type = TYPE_BLOB_DATA
        elif entry_type == TYPE_BLOB_DATA:
            continue
        else:
            raise NvsFormatError(f"entry {namespace}/{key}: unknown type {entry_type:#x}")
        result.setdefault(namespace, {})[key] = NvsValue(namespace, key, entry_type, value)
    return result
