"""Running the real Mosquitto on the files of OUT/broker/: for `gen broker up`, `gen simulate`, `gen doctor` and
the tests.

The broker runs from a private copy of OUT/broker/: the config's absolute paths (broker.INSTALL_DIR) are
rewritten to the copy, the listener ports may be overridden, and the copy gets the owner and modes the operator
README prescribes. Started as root, Mosquitto drops to user `mosquitto` before it reads any key, password file or
ACL, so the copy is then root:mosquitto, directory 0750, secrets 0640: the same layout the README installs.
Its log (stderr) goes to a file in the copy; startup succeeds when it says `mosquitto version … running`.

    with running_broker(out_dir / "broker", port=18883, bind_address="127.0.0.1") as broker:
        ...  # broker.host, broker.port, broker.log_text()
        broker.install(out_dir / "broker"); broker.reload()   # e.g. after `gen pki revoke` + regenerate
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from generator.broker.render import (
    BOOTSTRAP_PASSWORD_FILE,
    CONF_FILE,
    INSTALL_DIR,
    PATH_OPTIONS,
    PLUGIN_OPTION,
    PLUGIN_STATE_OPTION,
    README_FILE,
    SECRET_FILES,
)
from generator.core.errors import ToolError, UserError
from generator.core.files import write_atomic

BROKER_USER = "mosquitto"
STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
INSTALL_HINT = "install it: sudo apt-get install mosquitto mosquitto-clients"
RUNNING_LINE = re.compile(r"mosquitto version (\S+) running")
_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/opt/homebrew/sbin", "/usr/local/opt/mosquitto/sbin")
# Where distributions put the dynamic-security plugin (Debian: per architecture).
_PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                 "/usr/lib64/mosquitto_dynamic_security.so", "/usr/local/lib/mosquitto_dynamic_security.so",
                 "/opt/homebrew/lib/mosquitto_dynamic_security.so")
_DYNSEC_DIR = "dynsec"      # in the private copy: writable by the broker's user (the plugin saves by rename)
_LOG_NAME = "mosquitto.log"
_CONF_NAME = "mosquitto.conf"
_PID_NAME = "mosquitto.pid"


def find_mosquitto() -> Path:
    """The `mosquitto` binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ToolError("the Mosquitto broker (`mosquitto`) is not installed", hint=INSTALL_HINT)


PLUGIN_ENV = "GEN_MOSQUITTO_DYNSEC_PLUGIN"    # a plugin file elsewhere; empty: run without it


def find_dynsec_plugin() -> Path | None:
    """The dynamic-security plugin Mosquitto ships (mosquitto_dynamic_security.so), or None.
    $GEN_MOSQUITTO_DYNSEC_PLUGIN names another file; set empty, the broker runs without it (gen broker apply then ends
    sessions by a restart)."""
    if PLUGIN_ENV in os.environ:
        named = os.environ[PLUGIN_ENV]
        return Path(named) if named and Path(named).is_file() else None
    for pattern in _PLUGIN_GLOBS:
        for found in sorted(Path("/").glob(pattern.lstrip("/"))):
            if found.is_file():
                return found
    return None


# ---------------------------------------------------------------------------------------------- the private copy


@dataclass(frozen=True)
class ListenerPorts:
    tls: int | None = None          # override for the TLS listener's port (None: as configured)
    plaintext: int | None = None    # override for the plaintext listener's port, if there is one
    bind_address: str | None = None # e.g. "127.0.0.1"; None: all interfaces, as configured
    provision: int | None = None    # override for the bootstrap listener's port, if there is one


@dataclass(frozen=True)
class ConfiguredPorts:
    tls: int
    plaintext: int | None
    provision: int | None


def private_conf(conf_text: str, *, private_dir: Path, ports: ListenerPorts, run_as: str | None
                 ) -> tuple[str, ConfiguredPorts]:
    """The config for the private copy: paths under broker.INSTALL_DIR moved to `private_dir`, listener ports and
    bind address overridden, `user` set. Returns the text and the ports it listens on."""
    install_prefix = f"{INSTALL_DIR}/"
    plugin = find_dynsec_plugin()
    blocks: list[list[str]] = [[]]
    for line in conf_text.splitlines():
        words = line.split(" ")
        if words[0] in PATH_OPTIONS and len(words) == 2 and words[1].startswith(install_prefix):
            line = f"{words[0]} {private_dir / words[1][len(install_prefix):]}"
        elif words[0] == PLUGIN_OPTION and len(words) == 2:
            if plugin is None:
                continue                      # no plugin here: gen broker apply ends sessions by a restart
            line = f"{words[0]} {plugin}"
        elif words[0] == PLUGIN_STATE_OPTION and len(words) == 2:
            if plugin is None:
                continue
            line = f"{words[0]} {private_dir / _DYNSEC_DIR / 'dynsec.json'}"
        if words[0] == "listener":
            blocks.append([])
        blocks[-1].append(line)
    tls_port: int | None = None
    plaintext_port: int | None = None
    provision_port: int | None = None
    bootstrap_passwords = f" {private_dir / BOOTSTRAP_PASSWORD_FILE}"
    for block in blocks[1:]:
        words = block[0].split(" ")
        is_tls = (any(line.startswith("certfile ") for line in block)
                  and any(line.startswith("keyfile ") for line in block))
        port = int(words[1])
        if is_tls and any(line.startswith("password_file") and line.endswith(bootstrap_passwords) for line in block):
            port = ports.provision or port
            provision_port = port
        elif is_tls:
            port = ports.tls or port
            tls_port = tls_port or port
        else:
            port = ports.plaintext or port
            plaintext_port = plaintext_port or port
        address = ports.bind_address or (words[2] if len(words) > 2 else None)
        block[0] = f"listener {port}" + (f" {address}" if address else "")
    if tls_port is None:
        raise UserError("the broker config has no TLS listener (a listener with both certfile and keyfile)",
                        hint="regenerate it: gen generate SPEC")
    lines = [line for block in blocks for line in block]
    if run_as:
        lines += ["", f"user {run_as}"]
    return "\n".join(lines) + "\n", ConfiguredPorts(tls_port, plaintext_port, provision_port)


def _run_as_user() -> tuple[str | None, int | None]:
    """(user the broker drops to, its group id): only when we are root; otherwise the broker stays us."""
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(BROKER_USER)
    except KeyError:
        raise ToolError(f"running as root, but there is no user {BROKER_USER!r} for Mosquitto to drop to",
                        hint=f"{INSTALL_HINT} (the package creates the user), or run as a normal user")
    return BROKER_USER, entry.pw_gid


def copy_broker_files(broker_dir: Path, private_dir: Path, *, ports: ListenerPorts) -> ConfiguredPorts:
    """Copies OUT/broker/ into `private_dir` with owner and modes the broker accepts; returns the ports."""
    broker_dir = Path(broker_dir)
    conf_path = broker_dir / CONF_FILE
    if not conf_path.is_file():
        raise UserError(f"{conf_path} does not exist", hint="generate it first: gen generate SPEC")
    run_as, group = _run_as_user()
    secret_mode, public_mode = (0o640, 0o644) if group is not None else (0o600, 0o644)
    owner = (0, group) if group is not None else None
    for source in sorted(broker_dir.iterdir()):
        if not source.is_file() or source.name in (CONF_FILE, README_FILE):
            continue
        target = private_dir / source.name
        write_atomic(target, source.read_bytes(), fresh=True, owner=owner,
                     mode=secret_mode if source.name in SECRET_FILES else public_mode)
    text, configured = private_conf(conf_path.read_text(), private_dir=private_dir, ports=ports, run_as=run_as)
    dynsec_dir = private_dir / _DYNSEC_DIR
    if not dynsec_dir.is_dir():            # empty: the plugin starts with no client (an empty file is valid)
        dynsec_dir.mkdir(mode=0o700)
        (dynsec_dir / "dynsec.json").touch(mode=0o600)
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            for path in (dynsec_dir, dynsec_dir / "dynsec.json"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
    write_atomic(private_dir / _CONF_NAME, text.encode(), mode=public_mode, fresh=True, owner=owner)
    return configured


def conf_ends_sessions(conf_path: Path) -> bool:
    """Whether a mosquitto.conf loads a plugin (the dynamic-security one, in what gen writes)."""
    try:
        return any(line.startswith(f"{PLUGIN_OPTION} ") for line in conf_path.read_text().splitlines())
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- the process


@dataclass
class RunningBroker:
    """A mosquitto process started by `running_broker`. Mutable: `restart()` replaces the process."""

    host: str
    port: int                           # the TLS listener
    process: subprocess.Popen
    log_path: Path
    plaintext_port: int | None = None
    version: str = ""
    private_dir: Path = field(default=Path("."), repr=False)
    _ports: ListenerPorts = field(default_factory=ListenerPorts, repr=False)
    provision_port: int | None = None   # the bootstrap listener, when the config has one
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ends_sessions(self) -> bool:
        """Whether its config loads the dynamic-security plugin (gen broker apply's way to end a session)."""
        return conf_ends_sessions(self.private_dir / _CONF_NAME)

    @property
    def pid_file(self) -> Path:
        """The broker's pid, kept current across restarts (as an init system would): what
        `gen provision serve --broker-pid-file` signals to reload it."""
        return self.private_dir / _PID_NAME

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """The first log line containing `text`, waiting up to `timeout` s for the broker to write it (it logs a
        refusal just after it has sent the alert). Raises ToolError if it never comes."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text().splitlines():
                if text in line:
                    return line
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise ToolError(f"mosquitto did not log {text!r} within {timeout:.0f} s")
            time.sleep(0.01)

    def install(self, broker_dir: Path) -> None:
        """Copies (new) files from OUT/broker/ into the private copy; takes effect on reload() or restart()."""
        copy_broker_files(Path(broker_dir), self.private_dir,
                          ports=ListenerPorts(self.port, self.plaintext_port, self._ports.bind_address,
                                              self.provision_port))

    def reload(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """SIGHUP: the broker re-reads the password file, ACL, certificates and CRL (not the listeners). Returns
        once the broker has logged `Reloading config.`; it reloads before it serves the next client."""
        before = self.log_text().count("Reloading config.")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log_text().count("Reloading config.") <= before:
            if self.process.poll() is not None:
                raise ToolError("mosquitto exited on SIGHUP:\n" + _error_lines(self.log_text()))
            if time.monotonic() > deadline:
                raise ToolError(f"mosquitto did not reload within {timeout:.0f} s")
            time.sleep(0.01)

    def restart(self) -> None:
        """Stops the broker and starts it again on the same ports from the private copy."""
        _stop(self.process)
        self.process, self.version = _start(self.private_dir, self.log_path, env=self._env)
        write_atomic(self.pid_file, f"{self.process.pid}\n".encode())

    def stop(self) -> None:
        _stop(self.process)


@contextlib.contextmanager
def running_broker(broker_dir: Path, port: int | None = None, *, plaintext_port: int | None = None,
                   bind_address: str | None = None, provision_port: int | None = None,
                   env: Mapping[str, str] | None = None) -> Iterator[RunningBroker]:
    """Runs mosquitto from a private copy of `broker_dir` (OUT/broker/) until the block ends. `port` overrides
    the TLS listener's port (None: the configured one), `provision_port` the bootstrap listener's; `env` is added
    to the broker's environment (e.g. a shifted clock). Raises ToolError with the broker's own error lines when
    it does not start."""
    binary = find_mosquitto()  # fail before creating anything
    private_dir = Path(tempfile.mkdtemp(prefix="gen-broker-"))
    try:
        _, group = _run_as_user()
        if group is not None:
            os.chown(private_dir, 0, group)
            os.chmod(private_dir, 0o750)
        ports = ListenerPorts(port, plaintext_port, bind_address, provision_port)
        configured = copy_broker_files(Path(broker_dir), private_dir, ports=ports)
        log_path = private_dir / _LOG_NAME
        broker: RunningBroker | None = None
        process: subprocess.Popen | None = None
        try:
            process, version = _start(private_dir, log_path, binary=binary, env=env)
            broker = RunningBroker(host=bind_address or "127.0.0.1", port=configured.tls, process=process,
                                   log_path=log_path, plaintext_port=configured.plaintext, version=version,
                                   private_dir=private_dir, _ports=ports, provision_port=configured.provision,
                                   _env=dict(env or {}))
            write_atomic(broker.pid_file, f"{process.pid}\n".encode())
            yield broker
        finally:   # a signal between the start and the block (gen broker up's Ctrl-C) stops it too
            if broker is not None:
                broker.stop()              # the process restart() put there
            elif process is not None:
                _stop(process)
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)  # it holds a copy of the broker key


def _prepare_child() -> None:
    """In the forked child, before exec: the signals `_signals_held` blocked are the broker's to receive again
    (a blocked mask is inherited across exec), and its open-files limit is raised to the hard limit."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _start(private_dir: Path, log_path: Path, *, binary: Path | None = None,
           env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    binary = binary or find_mosquitto()
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log, _signals_held():   # no Ctrl-C between the fork and `process` being set
        process = subprocess.Popen(
            [str(binary), "-c", str(private_dir / _CONF_NAME)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=private_dir,
            preexec_fn=_prepare_child, start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
    try:
        return process, _wait_until_running(process, log_path, offset)
    except BaseException:  # including Ctrl-C / SIGTERM while it starts: never leave it running in its own session
        _stop(process)
        raise


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends (then raise there): the process started inside it, in its own
    session, is always known to the code that must stop it."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _wait_until_running(process: subprocess.Popen, log_path: Path, offset: int) -> str:
    """Waits for `mosquitto version X running`; returns X."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        text = log_path.read_bytes()[offset:].decode(errors="replace")
        match = RUNNING_LINE.search(text)
        if match:
            return match.group(1)
        if process.poll() is not None:
            raise ToolError(f"mosquitto did not start (exit code {process.returncode}):\n{_error_lines(text)}",
                            hint=_startup_hint(text))
        if time.monotonic() > deadline:
            raise ToolError(f"mosquitto did not say it was running within {STARTUP_TIMEOUT_S:.0f} s:\n"
                            f"{_error_lines(text)}")
        time.sleep(0.01)


def _startup_hint(log_text: str) -> str:
    if "Address already in use" in log_text:
        return "another program listens on that port: stop it, or choose another port (gen broker up --port N)"
    return "fix what the broker says above, then regenerate the files: gen generate SPEC"


def _error_lines(log_text: str) -> str:
    lines = [line for line in log_text.splitlines() if "rror" in line or "arning" in line or "nable" in line]
    return "\n".join(lines or log_text.splitlines()[-10:]) or "(the broker printed nothing)"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
