"""Writing generated files: all into a temporary directory first, then moved into place, so nothing is ever
left half-written. Files whose content did not change are not touched (their mtime stays, builds stay cached).

Every file and folder gets an explicit mode, whatever the umask: secrets 0600 in 0700 folders (a folder that holds
a secret file is private), everything else 0644 in 0755 folders.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Mapping

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
PUBLIC_DIR_MODE = 0o755


def make_dirs(path: Path, mode: int = PUBLIC_DIR_MODE) -> None:
    """Creates `path` and its missing parents, each with `mode` whatever the umask (existing ones are left)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:  # made meanwhile by a concurrent run
            continue
        os.chmod(directory, mode)


def ensure_dir(path: Path, mode: int) -> None:
    """`path` with exactly `mode` (an existing one is set to it), its missing parents 0755, whatever the umask."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        pass
    if (path.stat().st_mode & 0o777) != mode:
        os.chmod(path, mode)


def fsync_dir(path: Path) -> None:
    """Makes a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, content: bytes, *, mode: int = PUBLIC_MODE, durable: bool = False,
                 fresh: bool = False, owner: tuple[int, int] | None = None) -> bool:
    """Writes one file atomically (a temp file beside it, then a rename) with exactly `mode`; missing folders are
    made (0700 for a secret file, else 0755). Returns False, and only corrects the mode, when the file already
    holds `content`; `fresh=True` skips that comparison (a new key). `durable=True` fsyncs the data. `owner`:
    (uid, gid) the file gets before it appears (a file another user reads, e.g. the broker after it drops root)."""
    path = os.fspath(path)
    if not fresh:
        try:
            with open(path, "rb") as existing:
                if existing.read() == content:
                    if (os.fstat(existing.fileno()).st_mode & 0o777) != mode:
                        os.chmod(path, mode)
                    return False
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass
    parent = os.path.dirname(path) or "."
    # One temp name per folder, process and thread: creating a reused name is far faster than a new unique one
    # (10,000 keys), and no other writer can hold it.
    temp = f"{parent}/.tmp-{os.getpid()}-{threading.get_ident()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(temp, flags, mode)
    except FileExistsError:     # left behind by a crash
        os.unlink(temp)
        fd = os.open(temp, flags, mode)
    except FileNotFoundError:   # the folder is missing: made first (checked only when it is)
        make_dirs(Path(parent), PRIVATE_DIR_MODE if mode == SECRET_MODE else PUBLIC_DIR_MODE)
        fd = os.open(temp, flags, mode)
    try:
        try:
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)  # independent of the umask
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return True


def create_file(path: Path, content: bytes, *, mode: int = PUBLIC_MODE) -> bool:
    """Writes a new file atomically, never replacing one that exists (a user's file): returns False if it did."""
    path = Path(path)
    make_dirs(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        try:
            os.link(temp, path)       # fails if path exists: no window in which another file could be replaced
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(temp)


def directory_modes(files: Mapping[str, bytes], modes: Mapping[str, int]) -> dict[str, int]:
    """The mode of every folder of a tree of relative paths: 0700 where a secret file lies directly in it."""
    result: dict[str, int] = {}
    for relative in files:
        private = modes.get(relative, PUBLIC_MODE) == SECRET_MODE
        folder = relative.rpartition("/")[0]
        while folder:
            if private:
                result[folder] = PRIVATE_DIR_MODE
            elif folder in result:      # and so are all its parents
                break
            else:
                result[folder] = PUBLIC_DIR_MODE
            private = False
            folder = folder.rpartition("/")[0]
    return result


def _holds(path: str, content: bytes, mode: int) -> bool:
    """Whether the file at `path` holds exactly `content` (its mode is corrected to `mode` when it does)."""
    try:
        with open(path, "rb") as existing:
            status = os.fstat(existing.fileno())
            if status.st_size != len(content) or existing.read() != content:
                return False
            if (status.st_mode & 0o777) != mode:
                os.fchmod(existing.fileno(), mode)
            return True
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False


def write_tree(root: Path, files: Mapping[str, bytes], *, modes: Mapping[str, int] | None = None) -> list[str]:
    """Writes {relative path: content} under root. Every new content is first written to a staging directory
    inside root (root's parent may belong to someone else), so a failure part-way leaves root's files as they
    were. Folders get their modes (directory_modes); each is made or corrected once, and a file whose content is
    already there is only read. Returns the paths that changed."""
    root = Path(root)
    modes = modes or {}
    ensure_dir(root, PUBLIC_DIR_MODE)
    base = str(root)
    pending = sorted(relative for relative, content in files.items()
                     if not _holds(f"{base}/{relative}", content, modes.get(relative, PUBLIC_MODE)))
    for folder, mode in sorted(directory_modes(files, modes).items()):
        try:
            if (os.stat(f"{base}/{folder}").st_mode & 0o777) != mode:
                os.chmod(f"{base}/{folder}", mode)
        except FileNotFoundError:
            make_dirs(root / folder, mode)
    if not pending:
        return []
    staging = tempfile.mkdtemp(dir=root, prefix=".staging.")
    try:
        made: set[str] = set()
        for relative in pending:
            folder = relative.rpartition("/")[0]
            if folder and folder not in made:
                os.makedirs(f"{staging}/{folder}", exist_ok=True)
                made.add(folder)
            fd = os.open(f"{staging}/{relative}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, modes.get(relative, PUBLIC_MODE))
                view = memoryview(files[relative])
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        for relative in pending:
            os.replace(f"{staging}/{relative}", f"{base}/{relative}")
        return pending
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_generated(root: Path, relative_paths: Iterable[str]) -> list[str]:
    """Removes files an earlier run wrote under root and this one no longer makes, then the folders that leaves
    empty. Only paths inside root are touched. Returns those removed."""
    root = Path(root).resolve()
    removed = []
    folders: set[Path] = set()
    for relative in relative_paths:
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or path == root or not (path.is_file() or path.is_symlink()):
            continue
        path.unlink()
        removed.append(relative)
        folders.update(parent for parent in path.parents if parent.is_relative_to(root) and parent != root)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty: something else (PlatformIO's .pio, another device's files) lives there
            pass
    return removed


def link_or_copy(source: Path, destination: Path, mode: int) -> None:
    """destination becomes the same file as source (a hard link, or a copy across file systems), atomically."""
    if destination.exists() and os.path.samefile(source, destination):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.chmod(temporary, mode)
    os.replace(temporary, destination)
