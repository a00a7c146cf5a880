"""The plan of a simulation, as plain values: which device runs which binary with which environment (the broker it
dials, its NVS image, its faults), and what its serial lines say it did. Pure functions of the spec, OUT and the
broker address."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from generator.core.errors import UserError
from generator.firmware.log import LinkTally
from generator.firmware.nvs_image import device_nvs_partitions
from generator.firmware.security import NVS_HMAC_KEY_ID, nvs_hmac_key_path, nvs_keys_path, sdkconfig_secure_version
from generator.output.layout import firmware_dir, simulated_device_dir
from generator.output.manifest import Manifest
from generator.pki.layout import PkiLayout
from generator.pki.ota_signing import signing_key
from generator.simulate.bootloader import SimulatedFlash, signed_host_image, write_flash
from generator.spec import Device, Spec

DEFAULT_WIFI_DOWN_FOR_S = 5.0


LOCAL_ADDRESS = "127.0.0.1"

EventSink = Callable[[str], None]            # one line about what the simulation is doing


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
                       nvs_keys: Path | None = None, nvs_hmac_key: Path | None = None) -> tuple[tuple[str, str], ...]:
    """`flash_dir`: where the device's NVS writes are kept across runs (GEN_SIM_NVS_STATE). `ota_server`: where the
    device's update downloads go (default: `gen ota serve` on this machine). `nvs_keys`: with
    security.nvs_encryption, the device's nvs_keys partition in pki/private/ (GEN_SIM_NVS_KEYS; only its path), or
    `nvs_hmac_key`: its HMAC key, in the eFuse block gen burns it into (GEN_SIM_EFUSE_HMAC_UP_KEY; only its path)."""
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
    if nvs_hmac_key is not None:
        env.append(("GEN_SIM_EFUSE_HMAC_UP_KEY", f"{NVS_HMAC_KEY_ID}:{nvs_hmac_key}"))
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


def _nvs_keys(spec: Spec, device_id: str, *, hmac: bool) -> Path | None:
    """The device's nvs_keys partition (`hmac`: its HMAC key) when its NVS is encrypted with that scheme: the
    firmware reads its NVS through it."""
    device = spec.device(device_id)
    if device.security is None or device.framework != "espidf":
        return None
    if hmac != device.security.nvs_keys_from_hmac or not device.security.nvs_encryption:
        return None
    private = PkiLayout(spec.pki.dir).private
    path = nvs_hmac_key_path(private, device_id) if hmac else nvs_keys_path(private, device_id)
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
                                     ota_server=ota_server, nvs_keys=_nvs_keys(spec, device_id, hmac=False),
                                     nvs_hmac_key=_nvs_keys(spec, device_id, hmac=True)),
                  flash=(flashes or {}).get(device_id))
        for device_id in device_ids)


def default_flash_root(spec: Spec) -> Path:
    """Where gen simulate keeps its simulated devices' flash between runs (what they wrote to NVS: a key a device
    made, its certificates), one folder per spec: in the user's cache, never in OUT or the PKI, which must not
    hold a device-born key. Deleting it erases the simulated boards."""
    digest = hashlib.sha256(str(spec.path).encode()).hexdigest()[:16]
    return default_host_build_cache().parent / "sim-flash" / f"{spec.project}-{digest}"


def build_secure_version(out_dir: Path, device_id: str) -> int | None:
    """The secure version the device's firmware in OUT is built with (its sdkconfig.defaults): what its image's
    esp_app_desc_t carries and its bootloader compares with the eFuse; None without anti-rollback (and for
    Arduino, which has no sdkconfig.defaults)."""
    sdkconfig = Path(out_dir) / firmware_dir(device_id) / "sdkconfig.defaults"
    return sdkconfig_secure_version(sdkconfig.read_text()) if sdkconfig.is_file() else None


def flash_devices(spec: Spec, out_dir: Path, device_ids: Sequence[str], binaries: Mapping[str, Path],
                  on_event: EventSink = lambda _: None) -> dict[str, SimulatedFlash]:
    """What `gen flash` would leave on each device that updates over the air: its partition table, erased
    otadata, and its firmware (the host build packed as an app image of its version and its build's secure
    version, signed with the project's key) in the first app slot: OUT/simulate/<id>/flash.bin. The chip's eFuse
    secure version beside it is kept (a USB flash does not touch eFuses). Devices without `ota:` have no flash."""
    key = signing_key(PkiLayout(spec.pki.dir))
    signed: dict[tuple[Path, str, str, int | None], Path] = {}
    flashes = {}
    for device_id in device_ids:
        device = spec.device(device_id)
        if device.ota is None:
            continue
        folder = Path(out_dir) / simulated_device_dir(device_id)
        secure_version = build_secure_version(out_dir, device_id)
        which = (binaries[device_id], device.chip, device.firmware_version, secure_version)
        if which not in signed:
            begun = time.monotonic()
            signed[which] = signed_host_image(binaries[device_id], folder, chip=device.chip,
                                              version=device.firmware_version, key=key,
                                              secure_version=secure_version or 0)
            on_event(f"signed the host image of {device_id} ({device.firmware_version}): "
                     f"{time.monotonic() - begun:.1f} s")
        partitions = (Path(out_dir) / firmware_dir(device_id) / "partitions.csv").read_text()
        write_flash(folder / "flash.bin", partitions_csv=partitions, app_image=signed[which].read_bytes())
        flashes[device_id] = SimulatedFlash(folder / "flash.bin", device.chip, anti_rollback=secure_version is not None)
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


def default_host_build_cache() -> Path:
    """Where host builds are cached between runs: the runtime library is compiled once per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gen" / "host-build"
