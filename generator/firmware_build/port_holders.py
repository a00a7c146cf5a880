"""Who holds a serial port open: the processes with a descriptor on it (Linux /proc), as "name (pid N)". Read only
what this user may read; an empty answer means gen could not tell, never that the port is free."""

from __future__ import annotations

import os
from pathlib import Path


def port_holders(port: str, *, proc: Path = Path("/proc")) -> list[str]:
    """Each process (other than this one) with `port` open, as "name (pid N)", in pid order."""
    try:
        target = os.path.realpath(port)
    except OSError:
        return []
    found = []
    try:
        pids = sorted((int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()))
    except OSError:
        return []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / str(pid) / "fd").iterdir()]
        except OSError:
            continue
        if target in links:
            try:
                name = (proc / str(pid) / "comm").read_text().strip()
            except OSError:
                name = "?"
            found.append(f"{name} (pid {pid})")
    return found
