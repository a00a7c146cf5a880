"""`gen broker apply`: the regenerated OUT/broker/ files into a running broker, a reload, and the end of every live
session whose identity lost its right to one (generator.broker.sessions).

Two kinds of running broker:
- the one `gen broker up` runs: it records where its private copy, pid file and log are in a state file under OUT
  (`BrokerUpRecord`), so apply finds it from the spec alone;
- a system broker: the directory it reads its files from (`--broker-dir`, /etc/mosquitto/gen as the broker README
  installs them) and how to reload it (its pid file, or a command such as `systemctl reload mosquitto`).

Order matters: the files first, the reload next (the broker now refuses a revoked certificate), the sessions last
(their clients reconnect at once, and meet the new CRL, ACL and password file).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from generator.broker import render as broker_files
from generator.broker.install import BrokerReload, replace_broker_file
from generator.broker.runner import ListenerPorts, RunningBroker, conf_ends_sessions, copy_broker_files
from generator.broker.sessions import Ended, current_keys, end_sessions, usernames_to_end
from generator.core.errors import ToolError, UserError
from generator.core.files import SECRET_MODE, write_atomic
from generator.pki.credentials import ClientCredentials
from generator.pki.index import IndexEntry

RELOAD_TIMEOUT_S = 10.0
RELOAD_SETTLE_S = 1.0          # a broker whose log we cannot read: it reloads within milliseconds of SIGHUP
RESTART_TIMEOUT_S = 30.0
RESTART_SIGNAL = signal.SIGUSR1   # to `gen broker up`: restart your broker (it has no plugin to end sessions)
_WATCHED = (broker_files.CRL_FILE, broker_files.ACL_FILE, broker_files.PASSWORD_FILE)
_RELOADED = "Reloading config."
# Beside the broker's files (never read by it): each identity's key at the last apply, so the next one knows whose
# key a `gen pki renew --new-key` changed. Public facts (key digests).
APPLIED_KEYS_FILE = "gen-applied-keys.json"

LogSink = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- gen broker up's record


@dataclass(frozen=True)
class BrokerUpRecord:
    """Where the broker `gen broker up` runs lives: written when it starts, removed when it stops."""

    gen_pid: int                  # the `gen broker up` process
    pid_file: str                 # the broker's pid
    private_dir: str              # its private copy of OUT/broker/
    log_path: str
    host: str
    port: int
    plaintext_port: int | None
    provision_port: int | None
    bind_address: str | None
    ends_sessions: bool = True    # its config loads the dynamic-security plugin; else: a restart ends them

    @classmethod
    def of(cls, broker: RunningBroker, bind_address: str | None) -> "BrokerUpRecord":
        return cls(gen_pid=os.getpid(), pid_file=str(broker.pid_file), private_dir=str(broker.private_dir),
                   log_path=str(broker.log_path), host=broker.host, port=broker.port,
                   plaintext_port=broker.plaintext_port, provision_port=broker.provision_port,
                   bind_address=bind_address, ends_sessions=broker.ends_sessions)

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=1).encode() + b"\n", mode=SECRET_MODE)

    @classmethod
    def read(cls, path: Path) -> "BrokerUpRecord | None":
        """The record, when the broker it names still runs; None otherwise."""
        try:
            record = cls(**json.loads(path.read_text()))
            pid = int(Path(record.pid_file).read_text().split()[0])
            os.kill(pid, 0)
            os.kill(record.gen_pid, 0)
        except (OSError, ValueError, TypeError, IndexError):
            return None
        return record


# ---------------------------------------------------------------------------------------------- where to apply


@dataclass(frozen=True)
class ApplyTarget:
    directory: Path               # where the broker reads its files
    reload: BrokerReload
    host: str                     # where the administrator dials the device listener
    port: int
    log_path: Path | None = None  # the broker's log, when we can read it (gen broker up)
    private_ports: ListenerPorts | None = None   # gen broker up's private copy: its config is rewritten for it
    restart: Callable[[], str] | None = None     # the fallback when its config loads no dynamic-security plugin
    ends_sessions: bool | None = None            # None: as its installed mosquitto.conf says

    @classmethod
    def broker_up(cls, record: BrokerUpRecord) -> "ApplyTarget":
        return cls(directory=Path(record.private_dir), reload=BrokerReload(pid_file=Path(record.pid_file)),
                   host=record.host, port=record.port, log_path=Path(record.log_path),
                   private_ports=ListenerPorts(record.port, record.plaintext_port, record.bind_address,
                                               record.provision_port),
                   restart=lambda: restart_broker_up(record), ends_sessions=record.ends_sessions)

    def can_end_sessions(self) -> bool:
        if self.ends_sessions is not None:
            return self.ends_sessions
        conf = self.directory / broker_files.CONF_FILE
        return conf_ends_sessions(conf) if conf.is_file() else True


def restart_broker_up(record: BrokerUpRecord) -> str:
    """Asks `gen broker up` to restart its broker; returns once the new one runs (its pid file changed)."""
    pid_file = Path(record.pid_file)
    before = _read(pid_file)
    os.kill(record.gen_pid, RESTART_SIGNAL)
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while _read(pid_file) == before:
        if time.monotonic() > deadline:
            raise ToolError(f"gen broker up did not restart its broker within {RESTART_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    return f"gen broker up restarted it (pid {(_read(pid_file) or b'?').decode().strip()})"


@dataclass(frozen=True)
class Applied:
    changed: tuple[str, ...]      # files whose content changed
    ended: tuple[Ended, ...]      # sessions ended
    conf_changed: bool            # mosquitto.conf changed: listeners and limits need a restart


def apply_broker_files(new_dir: Path, target: ApplyTarget, *, entries: Iterable[IndexEntry],
                       admin: ClientCredentials, broker_name: str, on_log: LogSink) -> Applied:
    """Installs `new_dir` (OUT/broker/) into the running broker, reloads it and ends the sessions that must end."""
    new_dir = Path(new_dir)
    if not (new_dir / broker_files.CONF_FILE).is_file():
        raise UserError(f"{new_dir} has no {broker_files.CONF_FILE}", hint="run gen generate SPEC first")
    before = {name: _read(target.directory / name) for name in (*_WATCHED, broker_files.CONF_FILE)}
    if target.private_ports is not None:
        copy_broker_files(new_dir, target.directory, ports=target.private_ports)
        changed = [name for name in before if _read(target.directory / name) != before[name]]
    else:
        changed = _install_system(new_dir, target.directory)
    after = {name: _read(target.directory / name) or b"" for name in _WATCHED}
    on_log(f"installed into {target.directory}: " + (", ".join(changed) if changed else "nothing changed"))
    entries = list(entries)
    keys_before = read_applied_keys(target.directory)
    if keys_before is None:
        on_log("no record of the keys this broker had (first apply): keys renewed before now are not checked")
    ended = usernames_to_end(before, after, entries, keys_before=keys_before, keep=(admin.name,))
    if changed:
        _reload(target, on_log)
    if ended and target.can_end_sessions():
        end_sessions([e.username for e in ended], host=target.host, port=target.port, admin=admin,
                     broker_name=broker_name)
    elif ended:
        if target.restart is None:
            raise ToolError("the broker's config loads no dynamic-security plugin, so only a restart ends the live "
                            f"sessions of {', '.join(e.username for e in ended)} (the files are installed)",
                            hint="restart it (sudo systemctl restart mosquitto), or install the plugin as "
                                 "build/broker/README.md says")
        on_log(f"restarted the broker, ending every session: {target.restart()} (no dynamic-security plugin here)")
    for item in ended:
        on_log(f"ended the live session of {item.username} ({item.why})")
    record_applied_keys(target.directory, entries)
    return Applied(tuple(changed), tuple(ended), broker_files.CONF_FILE in changed)


def record_applied_keys(directory: Path, entries: Iterable[IndexEntry]) -> None:
    replace_broker_file(Path(directory) / APPLIED_KEYS_FILE,
                        json.dumps(current_keys(entries), indent=1, sort_keys=True).encode() + b"\n", new_mode=0o644)


def read_applied_keys(directory: Path) -> dict[str, str] | None:
    try:
        keys = json.loads((Path(directory) / APPLIED_KEYS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in keys.items()} if isinstance(keys, dict) else None


def _install_system(new_dir: Path, directory: Path) -> list[str]:
    if not directory.is_dir():
        raise UserError(f"--broker-dir {directory} is not a directory",
                        hint=f"the directory the broker's config names (installed: {broker_files.INSTALL_DIR})")
    changed = []
    for source in sorted(new_dir.iterdir()):
        if not source.is_file() or source.name == broker_files.README_FILE:
            continue
        if source.name == broker_files.CONF_FILE and directory.resolve() != Path(str(broker_files.INSTALL_DIR)):
            continue          # it names its files under INSTALL_DIR: only there is it the broker's own config
        mode = 0o640 if source.name in broker_files.SECRET_FILES else 0o644
        if replace_broker_file(directory / source.name, source.read_bytes(), new_mode=mode):
            changed.append(source.name)
    return changed


def _reload(target: ApplyTarget, on_log: LogSink) -> None:
    seen = (_read(target.log_path) or b"").count(_RELOADED.encode()) if target.log_path else 0
    how = target.reload.run()
    if target.log_path is None:
        time.sleep(RELOAD_SETTLE_S)
    else:
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while (_read(target.log_path) or b"").count(_RELOADED.encode()) <= seen:
            if time.monotonic() > deadline:
                raise ToolError(f"mosquitto did not reload within {RELOAD_TIMEOUT_S:.0f} s ({how})")
            time.sleep(0.02)
    on_log(f"reloaded the broker ({how})")


def _read(path: Path | None) -> bytes | None:
    try:
        return path.read_bytes() if path is not None else None
    except (FileNotFoundError, PermissionError):
        return None
