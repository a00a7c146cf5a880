"""What `gen provision serve` does to the broker it serves: replaces the files it reads (the CRL, the bootstrap
password file) keeping their owner and mode, and makes it read them again (SIGHUP, or a command)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from generator.core.errors import ToolError, UserError
from generator.core.files import write_atomic


@dataclass(frozen=True)
class BrokerReload:
    """How the service makes the broker read a new CRL and bootstrap password file: SIGHUP to the pid in a pid
    file, or a command (e.g. `systemctl reload mosquitto`)."""

    pid_file: Path | None = None
    command: str | None = None

    def describe(self) -> str:
        return f"SIGHUP to the pid in {self.pid_file}" if self.pid_file else f"`{self.command}`"

    def run(self) -> str:
        if self.pid_file is not None:
            try:
                pid = int(self.pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGHUP)
            except (OSError, ValueError, IndexError) as error:
                raise ToolError(f"cannot reload mosquitto through {self.pid_file}: {error}",
                                hint="is the broker running? give --broker-pid-file or --reload-command") from None
            return f"SIGHUP pid {pid}"
        assert self.command is not None
        result = subprocess.run(shlex.split(self.command), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ToolError(f"`{self.command}` failed (exit {result.returncode}): {result.stderr.strip()[:200]}",
                            hint="check that it reloads mosquitto, e.g. systemctl reload mosquitto")
        return f"ran `{self.command}`"


def replace_broker_file(path: Path, content: bytes) -> bool:
    """Writes a file the broker reads, atomically and with the owner and mode of the one it replaces (the broker
    drops to user mosquitto before it reads it). Returns whether the content changed."""
    try:
        existing = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: it is not the directory the broker reads its files from",
                        hint="give --broker-dir, where mosquitto.conf's crlfile and password files are") from None
    owner = (existing.st_uid, existing.st_gid) if os.geteuid() == 0 else None
    return write_atomic(path, content, mode=existing.st_mode & 0o777, durable=True, owner=owner)
