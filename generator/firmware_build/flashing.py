"""Flashing: where each image goes in a chip's flash, the esptool arguments that put it there, and the serial port.

    layout = FlashLayout(chip="esp32", settings=flash_settings(target),
                         images=(FlashImage(0x1000, "bootloader.bin"), ...))
    layout.write_flash_args()
        ->  ["--chip", "esp32", "write-flash", "--flash-mode", "dio", ..., "0x1000", "bootloader.bin", ...]

`gen build` writes one FlashLayout per device as OUT/artifacts/<id>/flash.json (file names relative to that
directory); `gen flash` reads it back and runs esptool with exactly those arguments plus the port.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from serial.tools import list_ports

from generator.firmware_build.port_holders import port_holders
from generator.core.errors import GenError, ToolError, UserError
from generator.output.layout import MANIFEST_NAME, firmware_dir
from generator.output.manifest import Manifest, hex_offset, parse_offset, previous_manifest
from generator.spec.catalogue import Target

# esptool 5.6 BOOTLOADER_FLASH_OFFSET: where the second-stage bootloader sits, per chip.
BOOTLOADER_OFFSETS = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c2": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
    "esp32h2": 0x0,
    "esp32c5": 0x2000,
    "esp32p4": 0x2000,
}
DEFAULT_UPLOAD_BAUD = 460800     # PlatformIO's upload_speed for the espressif32 boards we list
FACTORY_IMAGE = "factory.bin"    # every image of the build merged into one file, flashed at 0x0
NVS_IMAGE = "nvs.bin"
FLASH_JSON = "flash.json"


def bootloader_offset(chip: str) -> int:
    try:
        return BOOTLOADER_OFFSETS[chip]
    except KeyError:
        raise UserError(f"chip {chip!r} has no known bootloader offset",
                        hint=f"use a target whose custom_chip is one of {', '.join(BOOTLOADER_OFFSETS)}") from None


@dataclass(frozen=True)
class FlashSettings:
    mode: str    # esptool --flash-mode: dio, qio, ...
    freq: str    # esptool --flash-freq: 40m, 80m, ...
    size: str    # esptool --flash-size: 4MB, ...

    def esptool_args(self) -> list[str]:
        return ["--flash-mode", self.mode, "--flash-freq", self.freq, "--flash-size", self.size]


def flash_settings(target: Target) -> FlashSettings:
    """The flash chip settings of a catalogue target, spelled the way esptool wants them."""
    frequency_hz = int(target.option("board_build.f_flash", "40000000L").rstrip("Ll"))  # "40000000L": a C long
    return FlashSettings(
        mode=target.option("board_build.flash_mode", "dio"),
        freq=f"{frequency_hz // 1_000_000}m",
        size=target.option("board_upload.flash_size", "4MB"),
    )


@dataclass(frozen=True)
class FlashImage:
    offset: int
    file: str            # a file name inside the device's artifacts directory


@dataclass(frozen=True)
class FlashLayout:
    """Everything esptool needs to flash one device from its artifacts directory."""

    device: str
    chip: str
    settings: FlashSettings
    images: tuple[FlashImage, ...]                  # in offset order; includes nvs.bin when the device has one
    factory: FlashImage | None = None                # the merged image of the build (without nvs.bin)
    nvs_offset: int | None = None                    # where nvs.bin goes when it is made at flash time, where the
                                                     # PKI lives (an image built without the PKI, e.g. in CI)

    def write_flash_args(self) -> list[str]:
        args = ["--chip", self.chip, "write-flash", *self.settings.esptool_args()]
        for image in self.images:
            args += [hex_offset(image.offset), image.file]
        return args

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "chip": self.chip,
            "flash_mode": self.settings.mode,
            "flash_freq": self.settings.freq,
            "flash_size": self.settings.size,
            "images": [{"offset": hex_offset(i.offset), "file": i.file} for i in self.images],
            "factory": {"offset": hex_offset(self.factory.offset), "file": self.factory.file} if self.factory else None,
            "nvs_offset": hex_offset(self.nvs_offset) if self.nvs_offset is not None else None,
            "esptool_args": self.write_flash_args(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FlashLayout":
        factory = data.get("factory")
        return cls(
            device=data["device"],
            chip=data["chip"],
            settings=FlashSettings(data["flash_mode"], data["flash_freq"], data["flash_size"]),
            images=tuple(FlashImage(parse_offset(i["offset"]), i["file"]) for i in data["images"]),
            factory=FlashImage(parse_offset(factory["offset"]), factory["file"]) if factory else None,
            nvs_offset=parse_offset(data["nvs_offset"]) if data.get("nvs_offset") else None,
        )


def read_flash_layout(artifacts_dir: Path) -> FlashLayout:
    path = Path(artifacts_dir) / FLASH_JSON
    try:
        return FlashLayout.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: this device has not been built",
                        hint="run `gen build SPEC --device ID` first") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a flash layout written by `gen build` ({error})",
                        hint="run `gen build SPEC --device ID` again") from None


def merge_bin_args(chip: str, settings: FlashSettings, images: list[tuple[int, Path]], output: Path) -> list[str]:
    """esptool 5 `merge-bin`: one raw file to flash at 0x0, holding every image at its offset (0xFF between)."""
    args = ["--chip", chip, "merge-bin", "-o", str(output), *settings.esptool_args()]
    for offset, path in sorted(images):
        args += [hex_offset(offset), str(path)]
    return args


# --------------------------------------------------------------------------------------- partition table

PARTITION_ENTRY = struct.Struct("<2sBBII16sI")   # magic, type, subtype, offset, size, label, flags
PARTITION_MAGIC = b"\xaa\x50"
PARTITION_TYPE_DATA = 0x01
PARTITION_SUBTYPE_NVS = 0x02


@dataclass(frozen=True)
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int


def parse_partition_table(data: bytes) -> tuple[Partition, ...]:
    """The entries of a binary ESP partition table (partitions.bin): 32-byte records until the MD5 or 0xFF fill."""
    partitions = []
    for start in range(0, len(data) - PARTITION_ENTRY.size + 1, PARTITION_ENTRY.size):
        magic, ptype, subtype, offset, size, label, _flags = PARTITION_ENTRY.unpack_from(data, start)
        if magic != PARTITION_MAGIC:
            break
        partitions.append(Partition(label.rstrip(b"\0").decode("ascii", "replace"), ptype, subtype, offset, size))
    return tuple(partitions)


PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_MAX_LEN = 0xC00
_CSV_TYPES = {"app": 0x00, "data": 0x01}
_CSV_SUBTYPES = {"factory": 0x00, "test": 0x20, "ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03,
                 "nvs_keys": 0x04, "efuse": 0x05, "fat": 0x81, "spiffs": 0x82,
                 **{f"ota_{index}": 0x10 + index for index in range(16)}}


def partition_table_from_csv(text: str) -> bytes:
    """The binary table (what ESP-IDF's gen_esp32part.py writes as partitions.bin) of a partitions CSV whose rows
    give every offset: the entries, the MD5 entry, 0xFF to PARTITION_TABLE_MAX_LEN."""
    entries = b""
    for line in text.splitlines():
        fields = [field.strip() for field in line.split("#", 1)[0].split(",")]
        if len(fields) < 5 or not fields[0]:
            continue
        name, kind, subtype, offset, size = fields[:5]
        entries += PARTITION_ENTRY.pack(PARTITION_MAGIC, _CSV_TYPES[kind], _CSV_SUBTYPES[subtype], int(offset, 0),
                                        int(size, 0), name.encode()[:16], 0)
    table = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return table + b"\xff" * (PARTITION_TABLE_MAX_LEN - len(table))


def nvs_partition(partitions: tuple[Partition, ...]) -> Partition | None:
    """The default NVS partition (label "nvs"), the one nvs_flash_init() and Preferences open."""
    candidates = [p for p in partitions if p.type == PARTITION_TYPE_DATA and p.subtype == PARTITION_SUBTYPE_NVS]
    for partition in candidates:
        if partition.label == "nvs":
            return partition
    return candidates[0] if candidates else None


# --------------------------------------------------------------------------------------- serial ports


@dataclass(frozen=True, order=True)
class SerialPort:
    device: str
    usb: bool                          # a USB serial bridge or USB-CDC port: where ESP32 boards appear
    description: str = ""

    def describe(self) -> str:
        return f"{self.device} ({self.description})" if self.description and self.description != "n/a" \
            else self.device


def serial_ports() -> list[SerialPort]:
    """The serial ports this machine shows (pyserial's list, which esptool also uses). A port with a USB vendor
    id is USB; the others are legacy UARTs such as /dev/ttyS0, never an ESP32 board's USB connection."""
    return sorted(SerialPort(port.device, port.vid is not None, port.description or "")
                  for port in list_ports.comports())


def _ports_sentence(ports: list[SerialPort]) -> str:
    return (f"the ports present are: {', '.join(port.describe() for port in ports)}" if ports
            else "no serial port is present at all")


def choose_port(requested: str | None, ports: list[SerialPort] | None = None) -> str:
    """The port to use: the one asked for (which must exist), else the only USB serial port there is. Anything
    else is the user's to settle (exit 2): no board, or several to choose from."""
    ports = serial_ports() if ports is None else ports
    if requested:
        if requested in {port.device for port in ports} or Path(requested).exists():
            return requested
        raise UserError(f"serial port {requested} does not exist; {_ports_sentence(ports)}",
                        hint="plug the board in (a USB cable that carries data, not only power), check `dmesg` for "
                             "the name it got, and pass it with --port")
    usb = [port for port in ports if port.usb]
    if len(usb) == 1:
        return usb[0].device
    if not usb:
        others = f" (only {', '.join(port.describe() for port in ports)}, which are not USB)" if ports else ""
        raise UserError(f"no USB serial port found: no ESP32 board seems to be connected{others}",
                        hint="plug it in with a USB data cable; on Linux it shows up as /dev/ttyUSB* or /dev/ttyACM* "
                             "(you may need to be in the dialout group); or name the port with --port")
    raise UserError(f"several USB serial ports are present: {', '.join(port.describe() for port in usb)}; which "
                    "board is meant is not clear", hint="pass the board's port with --port")


def port_busy_error(port: str) -> UserError:
    """Exit 2 (README: a port is the user's input): the port, and who holds it when /proc says."""
    holders = port_holders(port)
    who = f"{', '.join(holders)} holds it open" if holders else \
        "another program holds it open (a serial monitor, `gen monitor`, an IDE, or ModemManager)"
    return UserError(f"serial port {port} is busy: {who}",
                     hint="close that program (stop a monitor with Ctrl+C), then run the command again")


def check_port_free(port: str) -> None:
    """Refuses a port another program holds, the way esptool and pyserial lock it (flock on POSIX; on Windows
    the tool's own open fails instead, and explain_flash_failure says the same)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.EBUSY:
            raise port_busy_error(port) from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise ToolError(f"no permission to open serial port {port}. On Linux add yourself to the dialout "
                            "group (`sudo usermod -aG dialout $USER`, then log in again).") from None
        raise ToolError(f"cannot open serial port {port}: {error.strerror}. "
                        "Check the cable and the port name.") from None
    try:

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise port_busy_error(port) from None
    finally:
        os.close(fd)  # closing the descriptor drops our lock too


# --------------------------------------------------------------------------------------- flash and monitor

_GONE = re.compile(r"No such file or directory|FileNotFoundError")
_BUSY = re.compile(r"port is busy|Device or resource busy|Could not exclusively lock|Resource temporarily unavailable")
_NO_CHIP = re.compile(r"Failed to connect to|No serial data received|Wrong boot mode detected")
_NO_PERMISSION = re.compile(r"Permission denied")


def upload_baud(target: Target) -> int:
    return int(target.option("upload_speed", str(DEFAULT_UPLOAD_BAUD)))


def esptool_flash_argv(esptool: str, layout: FlashLayout, *, port: str, baud: int) -> list[str]:
    """The whole esptool command line of `gen flash`: the port, then flash.json's write-flash arguments."""
    return [esptool, "--port", port, "--baud", str(baud), *layout.write_flash_args()]


def esptool_nvs_argv(esptool: str, layout: FlashLayout, *, port: str, baud: int) -> list[str]:
    """Only nvs.bin at its offset (after `pio run -t upload` wrote the app)."""
    nvs = [image for image in layout.images if image.file == NVS_IMAGE]
    args = [esptool, "--port", port, "--baud", str(baud), "--chip", layout.chip, "write-flash"]
    for image in nvs:
        args += [hex_offset(image.offset), image.file]
    return args


def pio_upload_argv(pio: str, project_dir: Path, env: str, *, port: str) -> list[str]:
    return [pio, "run", "-d", str(project_dir), "-e", env, "-t", "upload", "--upload-port", port]


def pio_monitor_argv(pio: str, project_dir: Path | None, target: Target, *, port: str) -> list[str]:
    """`pio device monitor` at the catalogue's monitor_speed with its filters (esp32_exception_decoder decodes
    backtraces with the build's firmware.elf, found through -d/-e). Without a project here (the board was
    flashed elsewhere): the speed and the filters that need no build."""
    argv = [pio, "device", "monitor", "-p", port, "-b", target.option("monitor_speed", "115200")]
    for monitor_filter in (target.option("monitor_filters") or "esp32_exception_decoder").replace(",", " ").split():
        if project_dir is not None or monitor_filter.strip() != "esp32_exception_decoder":
            argv += ["-f", monitor_filter.strip()]
    return argv + (["-d", str(project_dir), "-e", target.name] if project_dir is not None else [])


def monitor_project_dir(out_dir: Path, device_id: str) -> Path | None:
    """The PlatformIO project whose build decodes the device's backtraces: where `gen build` built its image,
    else its generated firmware project, else none (the monitor then runs without a project)."""
    manifest = previous_manifest(out_dir)
    device = manifest.device(device_id) if manifest else None
    if device is not None and device.artifacts is not None:
        return Path(out_dir) / device.artifacts.built_in
    project = Path(out_dir) / firmware_dir(device_id)
    return project if (project / "platformio.ini").is_file() else None


def explain_flash_failure(tool: str, output: str, returncode: int, port: str) -> GenError:
    if _GONE.search(output):
        return ToolError(f"serial port {port} disappeared while {tool} opened it (the board was unplugged or reset "
                         f"its USB bridge); {_ports_sentence(serial_ports())}. "
                         "Plug it in again and run the command again.")
    if _BUSY.search(output):
        return port_busy_error(port)
    if _NO_PERMISSION.search(output):
        return ToolError(f"no permission to open serial port {port}. On Linux add yourself to the dialout group "
                         "(`sudo usermod -aG dialout $USER`, then log in again).")
    if _NO_CHIP.search(output):
        return ToolError(
            f"{tool} opened {port} but no ESP32 bootloader answered. Check that this port is the board (not another "
            "serial device), use a USB cable that carries data, and if the board has no auto-reset hold BOOT while "
            "you press EN/RESET, then run `gen flash` again."
        )
    tail = "\n".join("    " + line for line in output.rstrip().splitlines()[-15:])
    return ToolError(f"{tool} failed (exit {returncode}) flashing through {port}. The end of its output:\n{tail}")


def run_flashing_tool(argv: list[str], *, port: str, cwd: Path | None = None,
                      echo: Callable[[str], None] | None = None) -> str:
    """Runs esptool or `pio run -t upload`, echoing its output as it comes; a failure becomes a ToolError."""
    tool = Path(argv[0]).name
    try:
        process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as error:
        raise ToolError(f"cannot run {tool}: {error.strerror}. Reinstall it, then run again.") from None
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))
    returncode = process.wait()
    output = "".join(lines)
    if returncode != 0:
        raise explain_flash_failure(tool, output, returncode, port)
    return output


@dataclass(frozen=True)
class BuiltDevice:
    """What `gen build` recorded for one device in OUT/manifest.json, as flash and monitor need it."""

    id: str
    target: Target
    artifacts_dir: Path
    built_in: Path                     # the PlatformIO project the image was built in (its .pio holds firmware.elf)


def built_device(out_dir: Path, manifest: Manifest, device_id: str, catalogue: dict[str, Target]) -> BuiltDevice:
    device = manifest.device(device_id)
    if device is None:
        raise UserError(f"{Path(out_dir) / MANIFEST_NAME} has no device {device_id!r}",
                        hint="run `gen build SPEC` for the spec that lists it")
    if device.artifacts is None:
        raise UserError(f"device {device_id} has not been built yet, or its firmware changed since it was built",
                        hint="run `gen build SPEC --device ID` first")
    target = catalogue.get(device.target)
    if target is None:
        raise UserError(f"device {device_id} names target {device.target!r}, which the catalogue does not list",
                        hint="run `gen build SPEC` again")
    return BuiltDevice(device_id, target, Path(out_dir) / device.artifacts.dir,
                       Path(out_dir) / device.artifacts.built_in)


def built_device_in(artifacts_dir: Path, device_id: str, target: Target) -> BuiltDevice:
    """A device's artifacts directory given directly (e.g. downloaded from CI): flashed with esptool only."""
    layout = read_flash_layout(artifacts_dir)
    if layout.device != device_id:
        raise UserError(f"{artifacts_dir} holds the artifacts of {layout.device!r}, not of {device_id!r}",
                        hint=f"download the artifact of {device_id}")
    return BuiltDevice(device_id, target, Path(artifacts_dir), Path(artifacts_dir))


def flash_device(device: BuiltDevice, *, port: str, method: str, esptool: str, pio: str | None,
                 echo: Callable[[str], None] | None = None) -> None:
    """Writes the device's artifacts through `port`: esptool with flash.json's arguments, or `pio run -t upload`
    followed by esptool for nvs.bin."""
    layout = read_flash_layout(device.artifacts_dir)
    baud = upload_baud(device.target)
    check_port_free(port)
    if method == "esptool":
        run_flashing_tool(esptool_flash_argv(esptool, layout, port=port, baud=baud), port=port,
                          cwd=device.artifacts_dir, echo=echo)
        return
    if method != "pio" or pio is None:
        raise UserError(f"--method {method!r} is not esptool or pio")
    run_flashing_tool(pio_upload_argv(pio, device.built_in, device.target.name, port=port), port=port, echo=echo)
    if any(image.file == NVS_IMAGE for image in layout.images):
        run_flashing_tool(esptool_nvs_argv(esptool, layout, port=port, baud=baud), port=port,
                          cwd=device.artifacts_dir, echo=echo)
