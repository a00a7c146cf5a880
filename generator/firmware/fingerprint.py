"""What a firmware image is made of, as one digest: the files of its PlatformIO project (PlatformIO's own outputs
left out), the folders outside it that it compiles (the user's src/, libraries and components next to the spec:
generator.firmware.app_layout), and every file those sources include by a quoted relative path from outside. Equal
fingerprints mean equal images: `gen build` builds once per fingerprint, `gen simulate` compiles once per
fingerprint, and `gen generate` keeps a build record while its fingerprint holds.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

from generator.firmware.app_layout import user_code

# What PlatformIO and editors write into a project: never part of what the image is made of.
PLATFORMIO_OUTPUTS = re.compile(r"^(\.pio|\.vscode|\.cache)(/|$)|^sdkconfig\.(?!defaults)[^/]+$|(^|/)\.DS_Store$")
SOURCE_SUFFIXES = (".c", ".cpp", ".cc", ".cxx", ".h", ".hpp")
_QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.MULTILINE)


def project_files(firmware_dir: Path) -> list[str]:
    """The project's own files, relative (POSIX) paths, sorted; PlatformIO's outputs left out."""
    root = Path(firmware_dir)
    files = []
    for directory, subdirs, names in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        subdirs[:] = sorted(d for d in subdirs if not PLATFORMIO_OUTPUTS.search(_join(relative_dir, d)))
        files += [_join(relative_dir, name) for name in names
                  if not PLATFORMIO_OUTPUTS.search(_join(relative_dir, name))]
    return sorted(files)


def outside_includes(sources: Iterable[Path], root: Path) -> list[Path]:
    """Files outside `root` that the sources include with `#include "relative/path"`, followed through what they
    include in turn (resolved next to the including file, as the compiler resolves quoted includes first)."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    found: list[Path] = []
    pending = [Path(source).resolve() for source in sources]
    while pending:
        source = pending.pop()
        if source in seen or not source.is_file():
            continue
        seen.add(source)
        try:
            text = source.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for name in _QUOTED_INCLUDE.findall(text):
            target = (source.parent / name).resolve()
            if target.is_file() and not target.is_relative_to(root) and target not in seen:
                found.append(target)
                pending.append(target)
    return sorted(set(found))


def firmware_fingerprint(firmware_dir: Path) -> str:
    """sha256 over the project's files (relative path and content) and the outside files its sources include
    (by their path relative to the project, so a project generated elsewhere with the same layout matches)."""
    root = Path(firmware_dir).resolve()
    digest = hashlib.sha256()
    files = project_files(root)
    for relative in files:
        digest.update(relative.encode() + b"\0" + hashlib.sha256((root / relative).read_bytes()).digest())
    sources = [root / relative for relative in files if relative.endswith(SOURCE_SUFFIXES)]
    for folder in user_code(root).folders():
        for relative in project_files(folder) if folder.is_dir() else []:
            path = folder / relative
            name = os.path.relpath(path, root)
            digest.update(b"outside\0" + name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
            if relative.endswith(SOURCE_SUFFIXES):
                sources.append(path)
    for path in outside_includes(sources, root):
        name = os.path.relpath(path, root)
        digest.update(b"include\0" + name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _join(directory: str, name: str) -> str:
    return name if directory == "." else f"{directory}/{name}"
