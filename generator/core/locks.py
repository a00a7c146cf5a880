"""An exclusive lock on a file (flock), held across processes: the PKI's one writer at a time, the host build's
shared cache. POSIX only."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator


def acquire_lock(path: Path) -> int | None:
    """Holds `path` locked exclusively; returns its descriptor. A folder this user may not write (a read-only
    checkout, another user's project) is only read: its lock file, if there is one, is locked through a read-only
    descriptor, and with none there is nothing to lock (no one can write there); None then. A write the caller
    then needs fails with the folder's own permission error."""
    cloexec = getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o600)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        try:
            fd = os.open(path, os.O_RDONLY | cloexec)
        except FileNotFoundError:
            return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """`with exclusive_lock(path):` one holder at a time, across processes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = acquire_lock(Path(path))
    try:
        yield
    finally:
        release_lock(fd)
