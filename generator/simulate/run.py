"""`gen simulate`: the generated firmware, compiled for Linux against the host runtime, run against the generated
Mosquitto broker. A user sees a device connect over mutual TLS without a board; we get our proof that the firmware
works.

    generate(spec, OUT) → running_broker(OUT/broker, free port) → compile_firmware per distinct firmware
      → one process per device (GEN_SIM_CONNECT_TO sends the dialled broker name to the local broker; the
        name is still what TLS verifies) → stdout streamed as `<id> | line` → SIGTERM → `[sim] stopped`

Each device's summary (connects, messages out and in, last error) is read from its own serial lines
(generator.firmware.log), what a user would see on the board's monitor: the runtime's MQTT libraries keep no
counts for us, so the real PubSubClient or esp-mqtt could be linked in their place.

The plan (which binary, which environment) is a pure function of the spec, OUT and the broker address; only
`run_devices` and `simulate` touch processes. The runtime's contract (env vars, the summary line) is
templates/host/README.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import dataclasses
import datetime as dt
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from generator.broker.render import check_runnable_here
from generator.broker.rabbitmq_runner import LocalCluster, find_rabbitmq, running_cluster
from generator.broker.runner import RunningBroker, find_mosquitto, running_broker
from generator.core.errors import GenError, UserError
from generator.core.files import PRIVATE_DIR_MODE, ensure_dir
from generator.firmware.fingerprint import firmware_fingerprint
from generator.firmware.log import LinkTally, tally_line
from generator.output.generate import generate
from generator.firmware.nvs_image import device_nvs_partitions
from generator.firmware.security import nvs_keys_path
from generator.ota.signing import signing_key
from generator.output.layout import BROKER_DIR, SIMULATE_DIR, firmware_dir, simulated_device_dir
from generator.output.manifest import Manifest, read_manifest
from generator.pki.layout import PkiLayout
from generator.pki.spec_identities import open_spec_pki
from generator.simulate.private_cache import forget_departed_builds, prepare_flash, purge_flash
from generator.broker.install import BrokerReload
from generator.provision.service import ProvisioningService, ServiceOptions
from generator.simulate.bootstrap_route import with_bootstrap_port
from generator.simulate.bootloader import BootError, SimulatedFlash, boot, signed_host_image, write_flash
from generator.simulate.clock import shifted_clock, shifted_environment
from generator.simulate.cluster import KILLED_NODE, check_kill_node, node_routes, routed_to_nodes
from generator.simulate.host_build import compile_firmware, find_toolchain
from generator.spec import Device, Spec

STOPPED_PREFIX = "[sim] stopped"   # the runtime's last line when it ends on a signal
REBOOT_EXIT_CODE = 3               # the runtime's exit when the firmware restarts the device
DEFAULT_WIFI_DOWN_FOR_S = 5.0
STOP_GRACE_S = 5.0          # after SIGTERM, how long a device has to print its summary before SIGKILL
LOCAL_ADDRESS = "127.0.0.1"

LineSink = Callable[[str, str], None]        # (device id, one line of its serial output)
EventSink = Callable[[str], None]            # one line about what the simulation is doing


# ---------------------------------------------------------------------------------------------- plain values


@dataclass(frozen=True)
class BrokerAddress:
    """Where the simulated devices' TCP connections really go (the TLS name stays the one the device dials)."""

    host: str
    port: int
    provision_port: int | None = None   # the bootstrap listener (devices that make their own key)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_broker_address(text: str) -> BrokerAddress:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--broker {text!r} is not HOST:PORT", hint="for example: --broker 127.0.0.1:8883")
    return BrokerAddress(host.strip("[]"), int(port))


@dataclass(frozen=True)
class Faults:
    """Resilience switches: the runtime drops WiFi (GEN_SIM_DROP_WIFI_AFTER); we restart the broker."""

    drop_wifi_after: float | None = None
    wifi_down_for: float = DEFAULT_WIFI_DOWN_FOR_S
    restart_broker_after: float | None = None
    kill_node_after: float | None = None       # broker.engine: rabbitmq: kill -9 of the first node (cluster.py)


@dataclass(frozen=True)
class DeviceRun:
    """One device process to start: its host binary and the GEN_SIM_* environment it runs with. A device that
    updates over the air has a flash and boots through the simulated bootloader (generator.simulate.bootloader),
    which picks the image to run from it, and again after each reboot."""

    device_id: str
    binary: Path
    environment: tuple[tuple[str, str], ...]
    flash: SimulatedFlash | None = None

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)


@dataclass(frozen=True)
class DeviceSummary:
    """What one device's serial output says it did on its MQTT link, plus how its process ended."""

    device_id: str
    connected: bool             # connected to the broker when it stopped
    connects: int               # successful MQTT connects (the first one plus reconnects)
    reconnects: int
    messages_out: int
    messages_in: int
    last_error: str
    exit_code: int | None = None
    reported: bool = True       # False: the process died (crashed or killed) instead of stopping or rebooting
    broker: str = ""            # the broker name it last connected to (a cluster: its node)

    @property
    def ever_connected(self) -> bool:
        return self.connects > 0


def connect_to_value(broker_names: Sequence[str], broker_port: int, address: BrokerAddress) -> str:
    """GEN_SIM_CONNECT_TO: every name the broker cert carries, at the port the device dials, goes to `address`.
    The device keeps verifying the name it dialled."""
    return ",".join(f"{name}:{broker_port}:{address.host}:{address.port}" for name in dict.fromkeys(broker_names))


def device_environment(device: Device, *, address: BrokerAddress, nvs_image: Path | None,
                       faults: Faults = Faults(), flash_dir: Path | None = None,
                       ota_server: BrokerAddress | None = None,
                       nvs_keys: Path | None = None) -> tuple[tuple[str, str], ...]:
    """`flash_dir`: where the device's NVS writes are kept across runs (GEN_SIM_NVS_STATE). `ota_server`: where the
    device's update downloads go (default: `gen ota serve` on this machine). `nvs_keys`: with
    security.nvs_encryption, the device's nvs_keys partition in pki/private/ (GEN_SIM_NVS_KEYS; only its path)."""
    names = (device.broker.host, *device.broker.names)
    connect_to = connect_to_value(names, device.broker.port, address)
    if device.makes_own_key and address.provision_port is not None:
        connect_to += "," + connect_to_value(names, device.broker.provision_port,
                                             BrokerAddress(address.host, address.provision_port))
    if device.ota is not None:
        server = ota_server or BrokerAddress(LOCAL_ADDRESS, device.ota.port)
        connect_to += "," + connect_to_value(names, device.ota.port, server)
    env = [("GEN_SIM_CONNECT_TO", connect_to)]
    if nvs_image is not None:
        env.append(("GEN_SIM_NVS", str(nvs_image)))
    if nvs_keys is not None:
        env.append(("GEN_SIM_NVS_KEYS", str(nvs_keys)))
    if device_nvs_partitions(device):
        env.append(("GEN_SIM_NVS_PARTITIONS", ",".join(device_nvs_partitions(device))))
    if flash_dir is not None:
        env.append(("GEN_SIM_NVS_STATE", str(flash_dir)))
    if faults.drop_wifi_after is not None:
        env.append(("GEN_SIM_DROP_WIFI_AFTER", f"{faults.drop_wifi_after:g}"))
        env.append(("GEN_SIM_WIFI_DOWN_FOR", f"{faults.wifi_down_for:g}"))
    return tuple(env)


def nvs_images(out_dir: Path, manifest: Manifest) -> dict[str, Path | None]:
    """Each device's NVS image (None when its secrets are embedded), where OUT/manifest.json says it is."""
    return {device.id: Path(out_dir) / device.nvs if device.nvs else None for device in manifest.devices}


def _nvs_keys(spec: Spec, device_id: str) -> Path | None:
    """The device's nvs_keys partition when its NVS is encrypted: the firmware reads its NVS through it."""
    device = spec.device(device_id)
    if device.security is None or not device.security.nvs_encryption or device.framework != "espidf":
        return None
    path = nvs_keys_path(PkiLayout(spec.pki.dir).private, device_id)
    return path if path.is_file() else None


def plan_runs(spec: Spec, device_ids: Sequence[str], binaries: Mapping[str, Path],
              nvs: Mapping[str, Path | None], address: BrokerAddress, faults: Faults = Faults(),
              flash_root: Path | None = None, flashes: Mapping[str, SimulatedFlash] | None = None,
              ota_server: BrokerAddress | None = None) -> tuple[DeviceRun, ...]:
    """`flash_root`: each device keeps what it writes to NVS in flash_root/<id>/ across runs. `flashes`: the app
    slots of devices that update over the air (flash_devices)."""
    return tuple(
        DeviceRun(device_id, binaries[device_id],
                  device_environment(spec.device(device_id), address=address, nvs_image=nvs.get(device_id),
                                     faults=faults, flash_dir=Path(flash_root) / device_id if flash_root else None,
                                     ota_server=ota_server, nvs_keys=_nvs_keys(spec, device_id)),
                  flash=(flashes or {}).get(device_id))
        for device_id in device_ids)


def default_flash_root(spec: Spec) -> Path:
    """Where gen simulate keeps its simulated devices' flash between runs (what they wrote to NVS: a key a device
    made, its certificates), one folder per spec: in the user's cache, never in OUT or the PKI, which must not
    hold a device-born key. Deleting it erases the simulated boards."""
    digest = hashlib.sha256(str(spec.path).encode()).hexdigest()[:16]
    return default_host_build_cache().parent / "sim-flash" / f"{spec.project}-{digest}"


def flash_devices(spec: Spec, out_dir: Path, device_ids: Sequence[str], binaries: Mapping[str, Path],
                  on_event: EventSink = lambda _: None) -> dict[str, SimulatedFlash]:
    """What `gen flash` would leave on each device that updates over the air: its partition table, erased
    otadata, and its firmware (the host build packed as an app image of its version, signed with the project's
    key) in the first app slot: OUT/simulate/<id>/flash.bin. Devices without `ota:` have no flash."""
    key = signing_key(PkiLayout(spec.pki.dir))
    signed: dict[tuple[Path, str, str], Path] = {}
    flashes = {}
    for device_id in device_ids:
        device = spec.device(device_id)
        if device.ota is None:
            continue
        folder = Path(out_dir) / simulated_device_dir(device_id)
        which = (binaries[device_id], device.chip, device.firmware_version)
        if which not in signed:
            begun = time.monotonic()
            signed[which] = signed_host_image(binaries[device_id], folder, chip=device.chip,
                                              version=device.firmware_version, key=key)
            on_event(f"signed the host image of {device_id} ({device.firmware_version}): "
                     f"{time.monotonic() - begun:.1f} s")
        partitions = (Path(out_dir) / firmware_dir(device_id) / "partitions.csv").read_text()
        write_flash(folder / "flash.bin", partitions_csv=partitions, app_image=signed[which].read_bytes())
        flashes[device_id] = SimulatedFlash(folder / "flash.bin", device.chip)
    return flashes


def select_devices(spec: Spec, device_ids: Sequence[str] = (), *, all_devices: bool = False) -> tuple[str, ...]:
    """The ids to simulate: the ones named (checked against the spec), else every device of the spec."""
    if device_ids and all_devices:
        raise UserError("--device and --all exclude each other", hint="name devices with --device, or use --all")
    if not device_ids:
        return tuple(device.id for device in spec.devices)
    return tuple(dict.fromkeys(spec.device(device_id).id for device_id in device_ids))


def device_summary(device_id: str, tally: LinkTally, *, stopped: bool, exit_code: int | None) -> DeviceSummary:
    """The summary of a device from its tally; `stopped`: it printed the runtime's stop line (or rebooted)."""
    if not stopped:
        why = "killed by signal" if exit_code is not None and exit_code < 0 else f"exited with code {exit_code}"
        last_error = f"the process {why}" + (f" (before that: {tally.last_error})" if tally.last_error else "")
        return DeviceSummary(device_id, False, tally.connects, tally.reconnects, tally.messages_out,
                             tally.messages_in, last_error, exit_code, reported=False, broker=tally.broker)
    return DeviceSummary(device_id, tally.connected, tally.connects, tally.reconnects, tally.messages_out,
                         tally.messages_in, tally.last_error, exit_code, broker=tally.broker)


def every_device_connected(summaries: Sequence[DeviceSummary]) -> bool:
    return bool(summaries) and all(summary.ever_connected for summary in summaries)


# ---------------------------------------------------------------------------------------------- processes


def _load_prctl():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_PRCTL = _load_prctl()   # looked up here, not in the forked child
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when `gen` itself dies, so no simulated device outlives the command."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DeviceProcess:
    """One running simulated device. Its stdout is read by the caller (`fd`, `read_lines`); its own session,
    so a terminal's Ctrl-C reaches `gen`, which then stops the devices in order."""

    def __init__(self, run: DeviceRun):
        self.run = run
        self._pending = b""
        self._said: list[str] = []      # the simulated bootloader's lines, before the next ones read
        self.eof = False
        self.tally = LinkTally()
        self.stopped = False
        self.stopping = False
        self._start()

    def _start(self) -> None:
        """Starts the device's process; with a flash, the image the bootloader chooses from it."""
        binary, env = self.run.binary, dict(self.run.env)
        if self.run.flash is not None:
            try:
                chosen = boot(self.run.flash)
            except BootError as error:
                if not hasattr(self, "process"):
                    raise                     # the flash written at the start holds no bootable image
                self._said.append(f"[sim] boot: {error}; the device stays in its bootloader")
                self.eof = True
                return
            binary = chosen.executable
            env.update(GEN_SIM_FLASH=str(self.run.flash.path), GEN_SIM_BOOT_SLOT=chosen.slot)
            self._said.append(f"[sim] boot: {chosen.slot}, {chosen.words}")
        self.process = subprocess.Popen(
            [str(binary)], env={**os.environ, **env},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        assert self.process.stdout is not None   # stdout=PIPE
        self.fd = self.process.stdout.fileno()
        os.set_blocking(self.fd, False)

    @property
    def device_id(self) -> str:
        return self.run.device_id

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_lines(self) -> list[str]:
        """Complete lines available now (without newline); each is tallied as it passes."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        data = self._pending + b"".join(chunks)
        *complete, self._pending = data.split(b"\n")
        if self.eof and self._pending:
            complete.append(self._pending)
            self._pending = b""
        lines = self._said + [raw.decode("utf-8", errors="replace").rstrip("\r") for raw in complete]
        self._said = []
        if self.eof and self._rebooted():
            lines += self._said
            self._said = []
        for line in lines:
            self.tally = tally_line(self.tally, line)
            self.stopped = self.stopped or line.startswith(STOPPED_PREFIX)
        return lines

    def _rebooted(self) -> bool:
        """After the process ended: a device with a flash that rebooted (exit 3) boots again. True if it did."""
        if self.run.flash is None or self.stopping or self.process.wait() != REBOOT_EXIT_CODE:
            return False
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.eof = False
        self._start()
        return not self.eof

    def signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            self.stopping = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def summary(self) -> DeviceSummary:
        exit_code = self.process.poll()
        return device_summary(self.device_id, self.tally, exit_code=exit_code,
                              stopped=self.stopped or exit_code == REBOOT_EXIT_CODE)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass(frozen=True)
class ScheduledAction:
    """Something to do once during a run, `after` seconds into it (e.g. restart the broker)."""

    after: float
    describe: str
    action: Callable[[], None] = field(compare=False)
    at: float = 0.0             # the monotonic time it falls due, set when the run starts


def _pump(processes: Sequence[DeviceProcess], on_line: LineSink, *, deadline: float | None,
          actions: Sequence[ScheduledAction] = (), on_event: EventSink = lambda _: None) -> None:
    """Reads every device's output until each has exited or the deadline (monotonic) passes, running each
    action when it falls due."""
    pending = sorted(actions, key=lambda action: action.at)
    reading = {process.fd: process for process in processes if not process.eof}
    with selectors.DefaultSelector() as selector:
        for process in reading.values():
            selector.register(process.fd, selectors.EVENT_READ, process)
        while reading:
            now = time.monotonic()
            while pending and now >= pending[0].at:
                due = pending.pop(0)
                on_event(due.describe)
                due.action()
            if deadline is not None and now >= deadline:
                return
            wake = min([at for at in (deadline, pending[0].at if pending else None) if at is not None],
                       default=now + 0.5)
            for key, _ in selector.select(timeout=min(max(0.0, wake - now), 0.5)):
                ready: DeviceProcess = key.data
                for line in ready.read_lines():
                    on_line(ready.device_id, line)
                if ready.eof or ready.fd != key.fd:    # ended, or rebooted into a new process
                    selector.unregister(key.fd)
                    del reading[key.fd]
                if not ready.eof and ready.fd not in reading:
                    selector.register(ready.fd, selectors.EVENT_READ, ready)
                    reading[ready.fd] = ready


@contextlib.contextmanager
def started_devices(runs: Sequence[DeviceRun]) -> Iterator[list[DeviceProcess]]:
    """Starts every device; whatever happens in the block, none is left running after it."""
    processes: list[DeviceProcess] = []
    try:
        for run in runs:
            processes.append(DeviceProcess(run))
        yield processes
    finally:
        for process in processes:
            process.close()


def stop_devices(processes: Sequence[DeviceProcess], on_line: LineSink,
                 on_event: EventSink = lambda _: None) -> tuple[DeviceSummary, ...]:
    """SIGTERM to every device, then reads until each has printed its stop line and exited (SIGKILL after
    STOP_GRACE_S). Returns the summaries in the order of `processes`."""
    for process in processes:
        process.signal(signal.SIGTERM)
    _pump(processes, on_line, deadline=time.monotonic() + STOP_GRACE_S)
    for process in processes:
        if not process.eof:
            on_event(f"{process.device_id} did not stop within {STOP_GRACE_S:g} s of SIGTERM; killing it")
            process.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.process.wait(timeout=STOP_GRACE_S)
        for line in process.read_lines():
            on_line(process.device_id, line)
    return tuple(process.summary() for process in processes)


def run_devices(runs: Sequence[DeviceRun], *, duration: float | None, on_line: LineSink,
                actions: Sequence[ScheduledAction] = (), on_event: EventSink = lambda _: None
                ) -> tuple[DeviceSummary, ...]:
    """Runs the devices for `duration` seconds (None: until Ctrl-C), streaming their output, then stops them and
    returns their summaries. Ctrl-C ends the run early: the devices are stopped and their summaries collected,
    then RunInterrupted (a KeyboardInterrupt) carries them to the caller."""
    with started_devices(runs) as processes:
        try:
            stream_devices(processes, duration=duration, on_line=on_line, actions=actions, on_event=on_event)
        except KeyboardInterrupt:
            on_event("interrupted: stopping the devices")
            raise RunInterrupted(stop_devices(processes, on_line, on_event)) from None
        return stop_devices(processes, on_line, on_event)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the run; the devices are stopped and these are their summaries."""

    def __init__(self, summaries: tuple[DeviceSummary, ...]):
        super().__init__("interrupted")
        self.summaries = summaries


def stream_devices(processes: Sequence[DeviceProcess], *, duration: float | None, on_line: LineSink,
                   actions: Sequence[ScheduledAction] = (), on_event: EventSink = lambda _: None) -> None:
    """Streams the running devices' output for `duration` seconds (None: until every one has exited), running
    each scheduled action when it is due."""
    started = time.monotonic()
    _pump(processes, on_line, deadline=started + duration if duration is not None else None,
          actions=[dataclasses.replace(action, at=started + action.after) for action in actions], on_event=on_event)


# ---------------------------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class SimulateOptions:
    device_ids: tuple[str, ...] = ()
    all_devices: bool = False
    duration: float | None = None
    broker: BrokerAddress | None = None          # an already running broker; None: start the generated one
    faults: Faults = Faults()
    out_dir: Path | None = None
    cache_dir: Path | None = None                # host build cache; None: default_host_build_cache()
    days_ahead: float = 0.0                      # run broker, devices and provisioning this far in the future
    flash_root: Path | None = None               # the simulated devices' flash; None: default_flash_root(spec)
    ota_server: BrokerAddress | None = None      # where update downloads go; None: gen ota serve on 127.0.0.1
    build_only: bool = False                     # compile (and sign, with ota:) without starting anything


@dataclass(frozen=True)
class SimulationResult:
    summaries: tuple[DeviceSummary, ...]
    broker: BrokerAddress

    @property
    def ok(self) -> bool:
        return every_device_connected(self.summaries) or not self.summaries


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL_ADDRESS, 0))
        return probe.getsockname()[1]


def default_host_build_cache() -> Path:
    """Where host builds are cached between runs: the runtime library is compiled once per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gen" / "host-build"


def compile_devices(spec: Spec, out_dir: Path, device_ids: Sequence[str], *, cache_dir: Path | None,
                    on_event: EventSink = lambda _: None,
                    on_progress: EventSink = lambda _: None) -> dict[str, Path]:
    """One host binary per distinct firmware: devices whose generated firmware is identical (a `secrets: nvs`
    fleet of one target) share it. Returns device id -> executable."""
    cache = Path(cache_dir) if cache_dir is not None else default_host_build_cache()
    if cache_dir is None:
        ensure_dir(cache.parent, PRIVATE_DIR_MODE)    # ~/.cache/gen: host builds and the simulated flash
    groups: dict[tuple[str, str], list[str]] = {}
    for device_id in device_ids:
        framework = spec.device(device_id).framework
        groups.setdefault((framework, firmware_fingerprint(Path(out_dir) / firmware_dir(device_id))), []).append(device_id)
    binaries: dict[str, Path] = {}
    for (framework, _), members in groups.items():
        begun = time.monotonic()
        binary = compile_firmware(Path(out_dir) / firmware_dir(members[0]), framework, cache,
                                  lambda text: on_progress(f"host build of {members[0]}: {text}"))
        shared = f", shared by {len(members)} devices" if len(members) > 1 else ""
        on_event(f"host build of {members[0]} ({framework}{shared}): {time.monotonic() - begun:.1f} s")
        binaries.update(dict.fromkeys(members, binary))
    gone = forget_departed_builds(cache, spec.path, binaries, [device.id for device in spec.devices])
    if gone:
        on_event(f"deleted {len(gone)} host build(s) of devices that left the spec or changed their key")
    return binaries


def host_key_digests(spec: Spec) -> dict[str, str | None]:
    """Each device's gen-made key (SHA-256 of its public key), None for one without (a password, its own key)."""
    store = open_spec_pki(spec, create=False)
    keys: dict[str, str | None] = {}
    for device in spec.devices:
        keys[device.id] = None
        if device.uses_client_cert and not device.makes_own_key:
            try:
                keys[device.id] = store.entry(device.id).key_sha256
            except (KeyError, UserError):
                pass
    return keys


def keep_flash_private(spec: Spec, out_dir: Path, flash_root: Path, on_event: EventSink) -> None:
    """The simulated flash of each device: private; wiped when the device left the spec or its key changed."""
    keys = host_key_digests(spec)
    wiped = purge_flash(flash_root, keys, [device.id for device in spec.devices if device.makes_own_key])
    simulated = Path(out_dir) / SIMULATE_DIR
    if simulated.is_dir():
        for folder in simulated.iterdir():
            if folder.is_dir() and folder.name not in keys:
                shutil.rmtree(folder, ignore_errors=True)
                wiped.append(folder.name)
    prepare_flash(flash_root, keys)
    if wiped:
        on_event(f"erased the simulated flash of {', '.join(sorted(set(wiped)))} (left the spec or got a new key)")


def simulate(spec: Spec, options: SimulateOptions, *, on_line: LineSink,
             on_event: EventSink = lambda _: None,
             progress: Callable[[], contextlib.AbstractContextManager[EventSink]] | None = None) -> SimulationResult:
    """The whole `gen simulate`: generate, start the broker (unless given one), compile, run, summarise.
    `progress()`: a context that hears each step of the host build while it runs (generator.cli.progress)."""
    device_ids = select_devices(spec, options.device_ids, all_devices=options.all_devices)
    if options.broker is not None and options.faults.restart_broker_after is not None:
        raise UserError("--restart-broker-after needs the broker gen simulate starts itself",
                        hint="drop --broker, or restart your broker yourself")
    check_kill_node(spec.broker, kill_node_after=options.faults.kill_node_after, own_broker=options.broker is not None,
                    restart_broker_after=options.faults.restart_broker_after)
    find_toolchain()                    # a missing compiler or broker says so before anything is generated
    if options.broker is None:
        find_rabbitmq() if spec.broker.clustered else find_mosquitto()
        if spec.broker.external:
            check_runnable_here(spec, Path("."))
    out_dir = Path(options.out_dir) if options.out_dir is not None else spec.default_out_dir
    ahead = dt.timedelta(days=options.days_ahead)
    world_env = shifted_environment(ahead) if options.days_ahead else {}   # libfaketime is checked before generating
    generated = generate(spec, out_dir, device_ids=list(device_ids))
    if options.broker is None:
        check_runnable_here(spec, out_dir / BROKER_DIR)
    on_event(f"generated {len(generated.devices)} device(s) and the broker into {out_dir}")
    with (progress() if progress is not None else contextlib.nullcontext(lambda _: None)) as on_progress:
        binaries = compile_devices(spec, out_dir, device_ids, cache_dir=options.cache_dir, on_event=on_event,
                                   on_progress=on_progress)
    keep_flash_private(spec, out_dir, options.flash_root or default_flash_root(spec), on_event)
    flashes = flash_devices(spec, out_dir, device_ids, binaries, on_event=on_event)
    if options.build_only:
        for device_id, flash in flashes.items():
            on_event(f"{device_id}: its signed host image is in {flash.boot_dir}/")
        return SimulationResult(summaries=(), broker=options.broker or BrokerAddress(LOCAL_ADDRESS, 0))

    if options.days_ahead:
        on_event(f"the clock of the broker, the devices and the provisioning service is {options.days_ahead:g} "
                 f"days ahead: {dt.datetime.now(dt.timezone.utc) + ahead:%Y-%m-%d %H:%M} UTC")
    given = with_bootstrap_port(spec, out_dir, options.broker) if options.broker is not None else None
    with _cluster_for(spec, out_dir, given, on_event) as cluster, \
            _broker_for(out_dir, given or _first_node(cluster), world_env) as (address, running), \
            _provisioning_for(spec, running, on_event, shifted_clock(ahead)):
        on_event(f"broker: {address}" + (" (started from " + str(out_dir / BROKER_DIR) + ")" if running else ""))
        if running is None and address.provision_port is not None:
            on_event(f"bootstrap listener (devices that make their own key): {address.host}:{address.provision_port}")
        actions = []
        if running is not None and options.faults.restart_broker_after is not None:
            actions.append(ScheduledAction(options.faults.restart_broker_after, "restarting the broker",
                                           running.restart))
        runs = plan_runs(spec, device_ids, binaries, nvs_images(out_dir, read_manifest(out_dir)), address,
                         options.faults, flash_root=options.flash_root or default_flash_root(spec),
                         flashes=flashes, ota_server=options.ota_server)
        runs = tuple(dataclasses.replace(run, environment=run.environment + tuple(world_env.items())) for run in runs)
        if cluster is not None:
            routes = node_routes(spec.broker, cluster.ports, LOCAL_ADDRESS)
            runs = tuple(dataclasses.replace(run, environment=routed_to_nodes(run.environment, routes)) for run in runs)
            if options.faults.kill_node_after is not None:
                node = cluster.nodes[KILLED_NODE - 1]
                actions.append(ScheduledAction(
                    options.faults.kill_node_after,
                    f"killing node {KILLED_NODE} ({spec.broker.dial_hosts[KILLED_NODE - 1]}, {node.name}) with kill -9",
                    lambda: cluster.kill(KILLED_NODE)))
        how_long = f"for {options.duration:g} s" if options.duration is not None else "until Ctrl-C"
        on_event(f"running {len(runs)} device(s) {how_long}")
        summaries = run_devices(runs, duration=options.duration, on_line=on_line, actions=actions,
                                on_event=on_event)
    return SimulationResult(summaries=summaries, broker=address)


@contextlib.contextmanager
def _cluster_for(spec: Spec, out_dir: Path, given: BrokerAddress | None, on_event: EventSink
                 ) -> Iterator[LocalCluster | None]:
    """broker.engine: rabbitmq without --broker: the local cluster of `gen broker up` (one node per spec node)."""
    if given is not None or not spec.broker.clustered:
        yield None
        return
    on_event(f"starting a {len(spec.broker.nodes)}-node RabbitMQ cluster on {LOCAL_ADDRESS} (about a minute)")
    with running_cluster(Path(out_dir) / BROKER_DIR, nodes=len(spec.broker.nodes)) as cluster:
        on_event("cluster nodes: " + ", ".join(f"{name} -> {LOCAL_ADDRESS}:{port}"
                                               for name, port in zip(spec.broker.dial_hosts, cluster.ports)))
        yield cluster


def _first_node(cluster: LocalCluster | None) -> BrokerAddress | None:
    return BrokerAddress(LOCAL_ADDRESS, cluster.ports[0]) if cluster is not None else None


@contextlib.contextmanager
def _broker_for(out_dir: Path, given: BrokerAddress | None, env: Mapping[str, str]
                ) -> Iterator[tuple[BrokerAddress, RunningBroker | None]]:
    """The broker the devices talk to: the one given, or the generated one on a free local port."""
    if given is not None:
        yield given, None
        return
    with running_broker(Path(out_dir) / BROKER_DIR, port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port(), env=env) as broker:
        yield BrokerAddress(broker.host, broker.port, broker.provision_port), broker


@contextlib.contextmanager
def _provisioning_for(spec: Spec, broker: RunningBroker | None, on_event: EventSink,
                      clock: Callable[[], dt.datetime]) -> Iterator[None]:
    """`gen provision serve` beside the broker gen simulate runs, when a device of the spec makes its own key (the
    devices provision and rotate against it as in the field); with a broker of your own, run it yourself."""
    if broker is None or not spec.provisions_devices:
        if spec.provisions_devices:
            on_event("devices make their own key: run `gen provision serve SPEC` beside your broker")
        yield
        return
    options = ServiceOptions(broker_host=LOCAL_ADDRESS, broker_port=broker.port, broker_dir=broker.private_dir,
                             reload=BrokerReload(pid_file=broker.pid_file), tls_name=spec.broker.host)
    service = ProvisioningService(spec, options, on_log=on_event, clock=clock)
    stop = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            service.run(stop)
        except GenError as error:       # reported when the run ends; the devices then show they never connected
            failure.append(error)

    thread = threading.Thread(target=serve, name="gen-provision", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        if failure:
            on_event(f"the provisioning service stopped: {failure[0]}")
