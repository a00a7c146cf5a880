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

import contextlib
import ipaddress
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from generator.core.errors import ToolError, UserError


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
    else:
        if path.read_bytes() == content:
            return False
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        with contextlib.suppress(PermissionError):
            os.fchown(fd, owner, group)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return True


def certificate_names(sock, name: str) -> bool:
    """Whether the TLS peer's certificate carries `name` (a DNS name or an IP address) in its SAN."""
    der = sock.getpeercert(binary_form=True) if sock is not None else None
    if not der:
        return False
    try:
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return False
    try:
        address = ipaddress.ip_address(name)
        return address in san.value.get_values_for_type(x509.IPAddress)
    except ValueError:
        return name.lower() in (value.lower() for value in san.value.get_values_for_type(x509.DNSName))
