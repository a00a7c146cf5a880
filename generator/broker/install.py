"""Putting new broker files where a running Mosquitto reads them, and making it read them.

- `replace_broker_file`: atomically, with the owner and mode of the file it replaces (the broker drops to user
  mosquitto before it reads its files, so a root-owned 0600 file would lock it out).
- `BrokerReload`: SIGHUP to the pid in a pid file, or an operator's command (`systemctl reload mosquitto`). SIGHUP
  re-reads the CRL, certificates, password file and ACL; it ends password logins that no longer match, and no TLS
  session (generator.broker.sessions ends those).
- `certificate_names`: whether a TLS peer's certificate names the broker (for clients that dial an address the
  certificate does not carry, e.g. 127.0.0.1, and check the spec's name instead).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from generator.core.errors import ToolError, UserError
from generator.core.files import write_atomic
from generator.pki.name_matching import openssl_accepts_name


@dataclass(frozen=True)
class BrokerReload:
    """How to make the broker read new files: SIGHUP to the pid in a pid file, or a command."""

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


def replace_broker_file(path: Path, content: bytes, *, new_mode: int | None = None) -> bool:
    """Writes a file the broker reads, atomically and with the owner and mode of the one it replaces. A file that
    does not exist yet is created only with `new_mode` (its group: the directory's). Returns whether the content
    changed."""
    try:
        existing = path.stat()
        owner, group, mode = existing.st_uid, existing.st_gid, existing.st_mode & 0o777
    except FileNotFoundError:
        if new_mode is None:
            raise UserError(f"{path} does not exist: it is not the directory the broker reads its files from",
                            hint="give --broker-dir, where mosquitto.conf's crlfile and password files are") from None
        folder = path.parent.stat()
        owner, group, mode = folder.st_uid, folder.st_gid, new_mode
    # Only root can give a file to another user; anyone else writes files that are theirs already.
    return write_atomic(path, content, mode=mode, durable=True, owner=(owner, group) if os.geteuid() == 0 else None)


def certificate_names(sock, name: str) -> bool:
    """Whether the TLS peer's certificate answers to `name` (a DNS name or an IP address), by OpenSSL's rules
    (generator.pki.name_matching)."""
    der = sock.getpeercert(binary_form=True) if sock is not None else None
    if not der:
        return False
    try:
        return openssl_accepts_name(x509.load_der_x509_certificate(der), name)
    except ValueError:
        return False
