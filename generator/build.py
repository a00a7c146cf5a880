"""`gen build`: PlatformIO run once per distinct firmware image, then per-device artifacts ready to flash.

    plan = plan_build(out_dir, read_manifest(out_dir), load_catalogue())   # which devices share an image
    result = run_build(plan, jobs=1, console=console)                      # pio run + metadata + merge-bin, per image
                                                                            # OUT/artifacts/<id>/ + manifest "artifacts"

Devices whose firmware projects are identical (`secrets: nvs`: everything that tells devices apart lives in nvs.bin)
share one PlatformIO run and one image; a fleet costs one build per target. The shared files of an image are kept
once in OUT/images/<env>-<key>/ and hard-linked into each device's artifacts directory.

PlatformIO's whole output goes to OUT/logs/; a failure becomes a ToolError that says what happened and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from generator.catalogue import Target
from generator.errors import ToolError, UserError
from generator.files import SECRET_MODE, write_atomic
from generator.flashing import (
    FACTORY_IMAGE,
    FLASH_JSON,
    NVS_IMAGE,
    FlashImage,
    FlashLayout,
    bootloader_offset,
    flash_settings,
    hex_offset,
    merge_bin_args,
    nvs_partition,
    parse_offset,
    parse_partition_table,
)
from generator.manifest import MANIFEST_NAME

ARTIFACTS_DIR = "artifacts"
IMAGES_DIR = "images"
LOGS_DIR = "logs"
DEFAULT_APP_OFFSET = 0x10000           # ESP-IDF and Arduino default, when the platform does not say
FIRMWARE_IMAGE = "firmware.bin"
BOOTLOADER_IMAGE = "bootloader.bin"
PARTITIONS_IMAGE = "partitions.bin"
FAILURE_TAIL_LINES = 20

# What PlatformIO itself writes into a project: never part of what tells two firmware projects apart.
_PLATFORMIO_OUTPUTS = re.compile(r"^(\.pio|\.vscode|\.cache)(/|$)|^sdkconfig\.(?!defaults)[^/]+$|(^|/)\.DS_Store$")


# ------------------------------------------------------------------------------------------------ tools


def _install_bin_dir() -> Path:
    """Where pip put our own dependencies' commands (pio, esptool): next to the interpreter running gen."""
    return Path(sys.executable).parent


def find_program(name: str) -> str | None:
    """The program on PATH, else the one installed beside gen (a pipx or venv install keeps it there)."""
    return shutil.which(name) or shutil.which(name, path=str(_install_bin_dir()))


def require_platformio() -> str:
    pio = find_program("pio")
    if pio is None:
        raise ToolError(
            "PlatformIO is not installed (no `pio` on PATH), so the firmware cannot be built, flashed or monitored. "
            "Install it into the environment gen runs in (`pip install platformio`), or add the directory that "
            "holds `pio` to PATH, then run the command again."
        )
    return pio


def require_esptool() -> str:
    esptool = find_program("esptool")
    if esptool is None:
        raise ToolError(
            "esptool is not installed (no `esptool` on PATH); it merges and flashes the images. Install it into the "
            "environment gen runs in (`pip install esptool`), or add its directory to PATH, then run again."
        )
    return esptool


def platformio_environment() -> dict[str, str]:
    return {**os.environ, "PLATFORMIO_DISABLE_COLOR": "true"}


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class DeviceToBuild:
    id: str
    target: Target
    firmware_dir: Path                 # absolute
    nvs: Path | None                   # absolute; the device's NVS image when secrets live there
    client_cert: Path | None           # absolute; public, read for its serial and expiry
    embeds_secrets: bool               # the app image itself holds this device's key / passwords


@dataclass(frozen=True)
class Image:
    """One distinct firmware image: one PlatformIO run, shared by every device listed."""

    key: str                           # sha256 over the firmware project's files
    target: Target
    project_dir: Path                  # where PlatformIO builds it: the first device's firmware directory
    devices: tuple[DeviceToBuild, ...]

    @property
    def env(self) -> str:
        return self.target.name

    @property
    def name(self) -> str:
        return f"{self.env}-{self.key[:12]}"

    @property
    def build_dir(self) -> Path:
        return self.project_dir / ".pio" / "build" / self.env

    def describe(self) -> str:
        ids = [d.id for d in self.devices]
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        return f"{self.env} ({shown})"


@dataclass(frozen=True)
class BuildPlan:
    out_dir: Path
    images: tuple[Image, ...]

    @property
    def devices(self) -> tuple[DeviceToBuild, ...]:
        return tuple(device for image in self.images for device in image.devices)


def project_fingerprint(firmware_dir: Path) -> str:
    """sha256 over every file of a firmware project (relative path and content), PlatformIO's outputs left out."""
    digest = hashlib.sha256()
    root = Path(firmware_dir)
    files = []
    for directory, subdirs, names in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        subdirs[:] = sorted(d for d in subdirs if not _PLATFORMIO_OUTPUTS.search(_join(relative_dir, d)))
        files += [_join(relative_dir, name) for name in names if not _PLATFORMIO_OUTPUTS.search(_join(relative_dir, name))]
    for relative in sorted(files):
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return digest.hexdigest()


def _join(directory: str, name: str) -> str:
    return name if directory == "." else f"{directory}/{name}"


def plan_build(out_dir: Path, manifest: dict[str, Any], catalogue: dict[str, Target],
               device_ids: Iterable[str] | None = None) -> BuildPlan:
    """Groups the manifest's devices by target and firmware project content: one Image per distinct group."""
    out_dir = Path(out_dir).absolute()
    entries = {entry["id"]: entry for entry in manifest.get("devices", [])}
    wanted = list(device_ids) if device_ids else list(entries)
    unknown = [device_id for device_id in wanted if device_id not in entries]
    if unknown:
        raise UserError(f"{out_dir / MANIFEST_NAME} has no device {', '.join(map(repr, unknown))}",
                        hint=f"use one of: {', '.join(entries)}")
    groups: dict[tuple[str, str], list[DeviceToBuild]] = {}
    for device_id in wanted:
        entry = entries[device_id]
        target = catalogue.get(entry["target"])
        if target is None:
            raise UserError(f"device {device_id} names target {entry['target']!r}, which the catalogue does not list",
                            hint="run `gen generate SPEC` again with a current spec")
        firmware_dir = out_dir / entry["firmware_dir"]
        if not (firmware_dir / "platformio.ini").is_file():
            raise UserError(f"{firmware_dir} holds no PlatformIO project", hint="run `gen generate SPEC` first")
        device = DeviceToBuild(
            id=device_id,
            target=target,
            firmware_dir=firmware_dir,
            nvs=out_dir / entry["nvs"] if entry.get("nvs") else None,
            client_cert=out_dir / entry["client_cert"] if entry.get("client_cert") else None,
            embeds_secrets=entry.get("secrets", "embed") != "nvs",
        )
        groups.setdefault((target.name, project_fingerprint(firmware_dir)), []).append(device)
    leaders = {group: members[0].firmware_dir for group, members in groups.items()}
    if device_ids:
        # Build where the whole fleet builds this image (the first device with the same project), so building
        # one device reuses the fleet's PlatformIO build cache, and the fleet reuses this build.
        found: set[tuple[str, str]] = set()
        for entry in manifest.get("devices", []):
            if len(found) == len(leaders):
                break
            firmware_dir = out_dir / entry["firmware_dir"]
            if not (firmware_dir / "platformio.ini").is_file():
                continue
            group = (entry["target"], project_fingerprint(firmware_dir))
            if group in leaders and group not in found:
                leaders[group] = firmware_dir
                found.add(group)
    images = tuple(
        Image(key=key, target=members[0].target, project_dir=leaders[(env, key)], devices=tuple(members))
        for (env, key), members in groups.items()
    )
    return BuildPlan(out_dir=out_dir, images=images)


def pio_run_args(image: Image) -> list[str]:
    return ["run", "-d", str(image.project_dir), "-e", image.env]


def pio_metadata_args(image: Image) -> list[str]:
    return ["project", "metadata", "-d", str(image.project_dir), "-e", image.env, "--json-output"]


# ------------------------------------------------------------------------------------------------ failures

_INSTALLING = re.compile(r"(?:Platform|Tool|Library|Package) Manager: Installing (.+)")
_OFFLINE = re.compile(r"HTTPClientError|InternetConnectionError|not connected to the Internet|"
                      r"NameResolutionError|Max retries exceeded|Temporary failure in name resolution")
_COMPILER_ERROR = re.compile(
    r"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+):(?:(?P<column>\d+):)? (?:fatal )?error: (?P<message>.+)$", re.MULTILINE)
_MAX_ERRORS_SHOWN = 8


def _display_path(path: Path) -> str:
    """A path as the user can open it from where they are: relative when it lies below the working directory."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _tail(text: str, lines: int = FAILURE_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def compiler_errors(log_text: str, project_dir: Path) -> list[str]:
    """gcc-style `file:line:col: error: message` lines of a PlatformIO log, paths shown as the user can open them."""
    found = []
    for match in _COMPILER_ERROR.finditer(log_text):
        path = Path(match["path"])
        path = path if path.is_absolute() else project_dir / path
        where = f"{_display_path(path)}:{match['line']}" + (f":{match['column']}" if match["column"] else "")
        line = f"{where}: error: {match['message'].strip()}"
        if line not in found:
            found.append(line)
    return found


def explain_build_failure(image: Image, log_text: str, returncode: int, log_path: Path) -> ToolError:
    log = _display_path(log_path)
    if _OFFLINE.search(log_text):
        installing = _INSTALLING.findall(log_text)
        what = installing[-1].strip() if installing else image.target.platform
        core = os.environ.get("PLATFORMIO_CORE_DIR", str(Path.home() / ".platformio"))
        return ToolError(
            f"PlatformIO could not reach its package registry: it stopped at \"Installing {what}\" with a network "
            f"error (HTTPClientError), because the platform, toolchain and framework for {image.env} are not in its "
            f"cache ({core}) and this machine cannot download them. Two ways out: run `gen build` once on a machine "
            f"with network access (PlatformIO keeps what it downloads in its core directory), or point "
            f"PLATFORMIO_CORE_DIR at a copy of a core directory primed that way (online: `pio pkg install -d "
            f"{_display_path(image.project_dir)} -e {image.env}`). Full log: {log}"
        )
    errors = compiler_errors(log_text, image.project_dir)
    if errors:
        shown = "\n".join("  " + line for line in errors[:_MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - _MAX_ERRORS_SHOWN} more" if len(errors) > _MAX_ERRORS_SHOWN else ""
        from generator.firmware import USER_OWNED_FILES

        yours = ", ".join(USER_OWNED_FILES.get(image.target.framework, ()))
        return ToolError(
            f"the firmware for {image.describe()} does not compile:\n{shown}{more}\n"
            f"If the error is in a file you own ({yours}), fix it there and build again; anything else is "
            f"generated, so change the spec rather than the file, or report it with the full log: {log}"
        )
    return ToolError(
        f"PlatformIO failed (exit {returncode}) building {image.describe()}. The end of its log:\n{_tail(log_text)}\n"
        f"Full log: {log}"
    )


# ------------------------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class BuiltImage:
    """What one PlatformIO run produced: every image to flash, with its offset, and the versions it used."""

    image: Image
    files: tuple[tuple[int, str, Path], ...]   # (offset, artifact name, where PlatformIO left it), by offset
    framework_version: str | None
    log_path: Path


@dataclass
class BuildTimer:
    """Wall-clock seconds spent waiting on PlatformIO, and how many times it ran (for bench/fleet.py)."""

    platformio_seconds: float = 0.0
    platformio_builds: int = 0
    platformio_calls: int = 0


_PROGRESS_LINE = re.compile(r"(?:Platform|Tool|Library|Package) Manager: Installing .+|Compiling .+|Linking .+|"
                            r"Building .+|Retrieving .+")


def _run_logged(argv: list[str], log_path: Path, on_progress: Callable[[str], None] | None = None) -> tuple[int, str]:
    """Runs a PlatformIO command with its whole output going to log_path; lines that say what it is doing
    (installing a package, compiling a file) go to on_progress as they come."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=platformio_environment(), text=True, errors="replace")
        except OSError as error:
            raise ToolError(f"cannot run {argv[0]}: {error.strerror}. Reinstall it, then run again.") from None
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if on_progress and _PROGRESS_LINE.match(line):
                on_progress(line.strip())
        returncode = process.wait()
    return returncode, log_path.read_text(encoding="utf-8", errors="replace")


def _timed(timer: BuildTimer, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return call()
    finally:
        timer.platformio_seconds += time.perf_counter() - started
        timer.platformio_calls += 1


def build_image(image: Image, *, pio: str, log_path: Path, timer: BuildTimer,
                on_progress: Callable[[str], None] | None = None) -> BuiltImage:
    """`pio run`, then `pio project metadata` for the flash layout. Raises ToolError with the reason on failure."""
    returncode, log_text = _timed(timer, lambda: _run_logged([pio, *pio_run_args(image)], log_path, on_progress))
    timer.platformio_builds += 1
    if returncode != 0:
        raise explain_build_failure(image, log_text, returncode, log_path)
    argv = [pio, *pio_metadata_args(image)]
    completed = _timed(timer, lambda: subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                                      env=platformio_environment()))
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n" + completed.stdout + completed.stderr)
    if completed.returncode != 0:
        raise explain_build_failure(image, completed.stdout + completed.stderr, completed.returncode, log_path)
    return read_build_outputs(image, _metadata_json(completed.stdout, image, log_path), log_path)


def _metadata_json(stdout: str, image: Image, log_path: Path) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                break
            if image.env in data:
                return data[image.env]
            break
    raise ToolError(f"`pio project metadata` gave no JSON for {image.env}, so the flash layout is unknown. "
                    f"PlatformIO may be too old (6.1 or newer is needed). Full log: {_display_path(log_path)}")


def read_build_outputs(image: Image, metadata: dict[str, Any], log_path: Path) -> BuiltImage:
    """Every image to flash and its offset, from PlatformIO's metadata (extra.flash_images, application_offset)."""
    extra = metadata.get("extra") or {}
    program = Path(metadata.get("prog_path") or image.build_dir / "firmware.elf")
    files: dict[int, tuple[str, Path]] = {
        parse_offset(extra.get("application_offset", DEFAULT_APP_OFFSET)): (FIRMWARE_IMAGE, program.with_suffix(".bin")),
    }
    boot_offset = bootloader_offset(image.target.chip)
    for flash_image in extra.get("flash_images") or []:
        offset, path = parse_offset(flash_image["offset"]), Path(flash_image["path"])
        if offset == boot_offset:
            name = BOOTLOADER_IMAGE
        elif path.name == PARTITIONS_IMAGE:
            name = PARTITIONS_IMAGE
        else:
            name = path.name
        files[offset] = (name, path)
    if boot_offset not in files and (image.build_dir / BOOTLOADER_IMAGE).is_file():
        files[boot_offset] = (BOOTLOADER_IMAGE, image.build_dir / BOOTLOADER_IMAGE)
    names = [name for name, _ in files.values()]
    for required in (FIRMWARE_IMAGE, BOOTLOADER_IMAGE, PARTITIONS_IMAGE):
        if required not in names:
            raise ToolError(f"PlatformIO built {image.env} but reported no {required} among its flash images, so "
                            f"the device cannot be flashed from the artifacts. Full log: {_display_path(log_path)}")
    repeated = {name for name in names if names.count(name) > 1}
    if repeated:  # two extra images with one file name: keep both, told apart by their offsets
        files = {offset: (f"{hex_offset(offset)}-{name}" if name in repeated else name, path)
                 for offset, (name, path) in files.items()}
    missing = [path for _, path in files.values() if not path.is_file()]
    if missing:
        raise ToolError(f"PlatformIO reported {_display_path(missing[0])} as a flash image of {image.env}, but it "
                        f"does not exist. Full log: {_display_path(log_path)}")
    return BuiltImage(
        image=image,
        files=tuple((offset, name, path) for offset, (name, path) in sorted(files.items())),
        framework_version=_framework_version(metadata),
        log_path=log_path,
    )


def _framework_version(metadata: dict[str, Any]) -> str | None:
    """The installed framework package's version, found through the include paths PlatformIO reports."""
    includes = metadata.get("includes") or {}
    paths = [p for group in includes.values() for p in group] if isinstance(includes, dict) else list(includes)
    for text in paths:
        parts = Path(text).parts
        for index, part in enumerate(parts):
            if part.startswith("framework-") and index > 0 and parts[index - 1] == "packages":
                package_json = Path(*parts[: index + 1]) / "package.json"
                try:
                    return str(json.loads(package_json.read_text(encoding="utf-8"))["version"])
                except (OSError, ValueError, KeyError):
                    return None
    return None


def merge_factory_image(built: BuiltImage, output: Path, *, esptool: str, log_path: Path) -> None:
    """esptool merge-bin: the image's files at their offsets, one file to flash at 0x0."""
    target = built.image.target
    argv = [esptool, *merge_bin_args(target.chip, flash_settings(target),
                                     [(offset, path) for offset, _, path in built.files], output)]
    output.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n" + completed.stdout + completed.stderr)
    if completed.returncode != 0 or not output.is_file():
        raise ToolError(f"esptool merge-bin failed (exit {completed.returncode}) for {built.image.describe()}:\n"
                        f"{_tail(completed.stdout + completed.stderr, 8)}\nFull log: {_display_path(log_path)}")


# ------------------------------------------------------------------------------------------------ artifacts


@dataclass(frozen=True)
class ArtifactFile:
    file: str
    offset: int
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "offset": hex_offset(self.offset), "sha256": self.sha256, "size": self.size}


def _digest(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def _link_or_copy(source: Path, destination: Path, mode: int) -> None:
    """destination becomes the same file as source (a hard link, or a copy across file systems), atomically."""
    if destination.exists() and os.path.samefile(source, destination):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.chmod(temporary, mode)
    os.replace(temporary, destination)


@dataclass(frozen=True)
class SharedImage:
    """A built image's files, kept once in OUT/images/<name>/ for every device that uses it."""

    built: BuiltImage
    directory: Path
    files: tuple[ArtifactFile, ...]       # by offset; factory.bin is not among them
    factory: ArtifactFile
    partitions: bytes

    @property
    def app_sha256(self) -> str:
        return next(f.sha256 for f in self.files if f.file == FIRMWARE_IMAGE)


def store_shared_image(built: BuiltImage, out_dir: Path, *, esptool: str) -> SharedImage:
    image = built.image
    directory = out_dir / IMAGES_DIR / image.name
    mode = SECRET_MODE if any(d.embeds_secrets for d in image.devices) else 0o644
    files = []
    partitions = b""
    for offset, name, source in built.files:
        content = source.read_bytes()
        write_atomic(directory / name, content, mode=mode)
        files.append(ArtifactFile(name, offset, hashlib.sha256(content).hexdigest(), len(content)))
        if name == PARTITIONS_IMAGE:
            partitions = content
    factory_path = directory / FACTORY_IMAGE
    merge_factory_image(built, factory_path, esptool=esptool, log_path=built.log_path)
    os.chmod(factory_path, mode)
    factory = ArtifactFile(FACTORY_IMAGE, 0x0, *_digest(factory_path))
    return SharedImage(built=built, directory=directory, files=tuple(files), factory=factory, partitions=partitions)


def _cert_facts(cert_path: Path | None) -> dict[str, str] | None:
    if cert_path is None or not cert_path.is_file():
        return None
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return {"serial": f"{cert.serial_number:X}", "not_after": cert.not_valid_after_utc.isoformat()}


def collect_device_artifacts(device: DeviceToBuild, shared: SharedImage, out_dir: Path) -> dict[str, Any]:
    """OUT/artifacts/<id>/: the image's files (hard links), the device's nvs.bin, flash.json. Returns its manifest entry."""
    image = shared.built.image
    directory = out_dir / ARTIFACTS_DIR / device.id
    mode = SECRET_MODE if device.embeds_secrets else 0o644
    files = list(shared.files)
    for artifact in (*shared.files, shared.factory):
        _link_or_copy(shared.directory / artifact.file, directory / artifact.file, mode)
    nvs_offset = None
    if device.nvs is None and not device.embeds_secrets:   # built without the PKI: nvs.bin is made at flash time
        partition = nvs_partition(parse_partition_table(shared.partitions))
        nvs_offset = partition.offset if partition is not None else None
    if device.nvs is not None:
        if not device.nvs.is_file():
            raise UserError(f"{device.nvs} is missing", hint="run `gen generate SPEC` again")
        partition = nvs_partition(parse_partition_table(shared.partitions))
        if partition is None:
            raise ToolError(f"the partition table built for {image.env} has no NVS partition, so {device.id}'s "
                            f"nvs.bin has nowhere to go. Use a partition table with an `nvs` data partition.")
        content = device.nvs.read_bytes()
        if len(content) > partition.size:
            raise ToolError(f"{device.id}'s nvs.bin is {len(content)} bytes but the NVS partition built for "
                            f"{image.env} holds {partition.size} ({hex_offset(partition.size)}); the partition table "
                            f"and the generator disagree. Regenerate with `gen generate`, then build again.")
        write_atomic(directory / NVS_IMAGE, content, mode=SECRET_MODE)
        files.append(ArtifactFile(NVS_IMAGE, partition.offset, hashlib.sha256(content).hexdigest(), len(content)))
    files.sort(key=lambda f: f.offset)
    layout = FlashLayout(
        device=device.id,
        chip=image.target.chip,
        settings=flash_settings(image.target),
        images=tuple(FlashImage(f.offset, f.file) for f in files),
        factory=FlashImage(shared.factory.offset, shared.factory.file),
        nvs_offset=nvs_offset,
    )
    write_atomic(directory / FLASH_JSON, (json.dumps(layout.to_json(), indent=2) + "\n").encode())
    keep = {f.file for f in files} | {FACTORY_IMAGE, FLASH_JSON}
    for stale in directory.iterdir():
        if stale.name not in keep and stale.is_file():
            stale.unlink()
    return {
        "dir": _relative(directory, out_dir),
        "flash": _relative(directory / FLASH_JSON, out_dir),
        "image": shared.app_sha256,
        "image_dir": _relative(shared.directory, out_dir),
        "built_in": _relative(image.project_dir, out_dir),
        "log": _relative(shared.built.log_path, out_dir),
        "target": image.env,
        "chip": image.target.chip,
        "platform": image.target.platform,
        "framework": image.target.framework,
        "framework_version": shared.built.framework_version,
        "files": [f.to_json() for f in files],
        "factory": shared.factory.to_json(),
        "cert": _cert_facts(device.client_cert),
    }


def _relative(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def update_manifest(out_dir: Path, artifacts: dict[str, dict[str, Any]], previous: dict[str, Any] | None = None) -> None:
    """Adds each built device's "artifacts" to OUT/manifest.json, and "images": which devices share which image.
    Devices not built this time keep what an earlier build recorded for them."""
    from generator.manifest import read_manifest

    manifest = read_manifest(out_dir)
    earlier = {d["id"]: d.get("artifacts") for d in (previous or {}).get("devices", [])}
    images: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("devices", []):
        built = artifacts.get(entry["id"]) or earlier.get(entry["id"])
        if not built:
            continue
        entry["artifacts"] = built
        image = images.setdefault(built["image"], {"sha256": built["image"], "target": built["target"],
                                                   "dir": built["image_dir"], "devices": []})
        image["devices"].append(entry["id"])
    manifest["images"] = list(images.values())
    write_atomic(out_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    in_use = {out_dir / image["dir"] for image in images.values()}
    for stale in (out_dir / IMAGES_DIR).iterdir() if (out_dir / IMAGES_DIR).is_dir() else ():
        if stale.is_dir() and stale not in in_use:
            shutil.rmtree(stale)  # an image no device uses any more (its sources changed)


# ------------------------------------------------------------------------------------------------ the whole build


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    images: tuple[SharedImage, ...]
    artifacts: dict[str, dict[str, Any]]
    timer: BuildTimer = field(compare=False)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class _Display:
    """A rich progress line per image while PlatformIO runs; nothing at all when no console is given."""

    def __init__(self, console, plan: BuildPlan):
        self.progress = None
        self.tasks: dict[str, Any] = {}
        if console is None:
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        for image in plan.images:
            self.tasks[image.key] = self.progress.add_task(f"waiting   {escape(image.describe())}", total=1, start=False)
        self.images = plan.images
        self.started: set[str] = set()

    def __enter__(self):
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress:
            for image in self.images:
                if image.key not in self.started:  # another image failed first
                    self.update(image, "skipped", done=True)
            self.progress.__exit__(*exc)

    def update(self, image: Image, state: str, done: bool = False, detail: str = "") -> None:
        """One line per image: its state, which devices, and what PlatformIO is doing right now."""
        if self.progress:
            task = self.tasks[image.key]
            self.started.add(image.key)
            self.progress.start_task(task)
            doing = f"  [dim]{escape(detail[:60])}[/]" if detail else ""
            self.progress.update(task, description=f"{state:<9} {escape(image.describe())}{doing}",
                                 completed=1 if done else 0)


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise UserError(f"--jobs {jobs} is not a positive number", hint="use --jobs 1 or more")


def run_build(plan: BuildPlan, *, jobs: int = 1, console=None, previous_manifest: dict[str, Any] | None = None,
              timer: BuildTimer | None = None) -> BuildResult:
    """Builds every image of the plan (up to `jobs` PlatformIO runs at once), collects every device's artifacts
    and records them in the manifest. The first failure stops the build with its ToolError."""
    check_jobs(jobs)
    pio = require_platformio()
    esptool = require_esptool()
    timer = timer or BuildTimer()
    out_dir = plan.out_dir

    def build_one(image: Image) -> SharedImage:
        try:
            display.update(image, "building")
            built = build_image(image, pio=pio, log_path=out_dir / LOGS_DIR / f"build-{image.name}.log", timer=timer,
                                on_progress=lambda line: display.update(image, "building", detail=line))
            display.update(image, "merging")
            shared = store_shared_image(built, out_dir, esptool=esptool)
        except BaseException:
            display.update(image, "failed", done=True)
            raise
        display.update(image, "built", done=True)
        return shared

    with _Display(console, plan) as display:
        if jobs == 1 or len(plan.images) == 1:
            shared_images = [build_one(image) for image in plan.images]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(build_one, image) for image in plan.images]
                shared_images = [future.result() for future in futures]
    artifacts = {}
    for shared in shared_images:
        for device in shared.built.image.devices:
            artifacts[device.id] = collect_device_artifacts(device, shared, out_dir)
    update_manifest(out_dir, artifacts, previous_manifest)
    return BuildResult(out_dir=out_dir, images=tuple(shared_images), artifacts=artifacts, timer=timer)
