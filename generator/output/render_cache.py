"""What each device's files in OUT were rendered from, so that a run with nothing changed neither renders nor
escapes them again.

    OUT/.render-cache.json   0600; per device: a digest of everything its files are rendered from (the device as
                             the spec resolved it, its credentials, where its project finds the user's code, gen's
                             own code and templates), the image it shares with `secrets: nvs` (the digest of that
                             project's files), and each file's size, mtime, inode and mode as gen left it; per
                             shared image: its digest and its files' stamps

A device is rendered again when any of that changed, or when one of its files is not exactly as gen left it (edited,
removed, its mode changed): the check is one stat per file, as git's index does it. The cache holds digests only,
never a key or a password; deleting it (or OUT) costs one full render.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from generator.core.files import SECRET_MODE, write_atomic
from generator.core.paths import PACKAGE_DIR, TEMPLATES_DIR

CACHE_NAME = ".render-cache.json"
CACHE_VERSION = 2

FileStamp = tuple[int, int, int, int]      # size, mtime_ns, inode, mode


@lru_cache(maxsize=1)
def code_digest() -> str:
    """gen's own code and templates: a change to either renders everything again."""
    digest = hashlib.sha256()
    for root in (PACKAGE_DIR, TEMPLATES_DIR):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def inputs_digest(*inputs: object) -> str:
    """A digest of a device's render inputs (frozen dataclasses and plain values: their repr is their content)."""
    return hashlib.sha256(repr((code_digest(), inputs)).encode()).hexdigest()


def stamp(path: str) -> FileStamp | None:
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (status.st_size, status.st_mtime_ns, status.st_ino, status.st_mode & 0o777)


@dataclass
class RenderCache:
    out: Path
    devices: dict[str, dict] = field(default_factory=dict)   # id -> {"inputs", "files": {path: stamp}, "group"}
    images: dict[str, dict] = field(default_factory=dict)    # shared image -> {"key", "files": {path: stamp}}

    @classmethod
    def read(cls, out: Path) -> "RenderCache":
        try:
            document = json.loads((out / CACHE_NAME).read_bytes())
        except (OSError, ValueError):
            return cls(out)
        if not isinstance(document, dict) or document.get("version") != CACHE_VERSION:
            return cls(out)
        return cls(out, dict(document.get("devices") or {}), dict(document.get("images") or {}))

    def current_files(self, device_id: str, inputs: str) -> tuple[str, ...] | None:
        """The device's files, when they were rendered from `inputs` and are on disk exactly as gen left them."""
        entry = self.devices.get(device_id)
        if not entry or entry.get("inputs") != inputs:
            return None
        return self._as_left(entry.get("files") or {})

    def group_of(self, device_id: str, inputs: str) -> str | None:
        """The shared image a `secrets: nvs` device was rendered into, when its inputs are the same again."""
        entry = self.devices.get(device_id)
        return entry.get("group") if entry and entry.get("inputs") == inputs else None

    def current_image(self, image: str, key: str) -> tuple[str, ...] | None:
        """A shared image's files, when they are those of `key` and on disk exactly as gen left them."""
        entry = self.images.get(image)
        if not entry or entry.get("key") != key:
            return None
        return self._as_left(entry.get("files") or {})

    def _as_left(self, files: Mapping[str, list]) -> tuple[str, ...] | None:
        base = str(self.out)
        if not files or any(stamp(f"{base}/{path}") != tuple(left) for path, left in files.items()):
            return None
        return tuple(files)

    def record(self, device_id: str, inputs: str, paths: tuple[str, ...], group: str | None = None) -> None:
        """After the device's files were written: what they were rendered from, and how they are on disk now."""
        self.devices[device_id] = {"inputs": inputs, "files": self._stamps(paths), "group": group}

    def record_image(self, image: str, key: str, paths: tuple[str, ...]) -> None:
        self.images[image] = {"key": key, "files": self._stamps(paths)}

    def _stamps(self, paths: tuple[str, ...]) -> dict[str, FileStamp | None]:
        base = str(self.out)
        return {path: stamp(f"{base}/{path}") for path in paths}

    def write(self, device_ids: set[str], images: set[str]) -> None:
        """Keeps the entries of the devices still in the spec and of the images still built."""
        document = {"version": CACHE_VERSION,
                    "devices": {key: entry for key, entry in self.devices.items() if key in device_ids},
                    "images": {key: entry for key, entry in self.images.items() if key in images}}
        write_atomic(self.out / CACHE_NAME, json.dumps(document, separators=(",", ":")).encode(), mode=SECRET_MODE)
