"""Writing generated files: all into a temporary directory first, then moved into place, so nothing is ever
left half-written. Files whose content did not change are not touched (their mtime stays, builds stay cached)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

SECRET_MODE = 0o600


def write_atomic(path: Path, content: bytes, *, mode: int = 0o644) -> bool:
    """Writes one file atomically; returns False (and does nothing) when it already holds `content`."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == content:
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return True


def write_tree(root: Path, files: Mapping[str, bytes], *, modes: Mapping[str, int] | None = None,
               keep_existing: frozenset[str] = frozenset()) -> list[str]:
    """Writes {relative path: content} under root. Every new content is first written to a staging directory
    beside root, so a failure part-way leaves root as it was. Paths in keep_existing (files the user owns) are
    written only if they do not exist yet. Returns the paths that changed."""
    root = Path(root)
    modes = modes or {}
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.staging."))
    try:
        pending: list[str] = []
        for relative, content in sorted(files.items()):
            target = root / relative
            if relative in keep_existing and target.exists():
                continue
            if target.is_file() and target.read_bytes() == content:
                mode = modes.get(relative, 0o644)
                if (target.stat().st_mode & 0o777) != mode:
                    os.chmod(target, mode)
                continue
            staged = staging / relative
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(content)
            os.chmod(staged, modes.get(relative, 0o644))
            pending.append(relative)
        for relative in pending:
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, target)
        return pending
    finally:
        shutil.rmtree(staging, ignore_errors=True)
