"""Running PlatformIO for one image: `pio run`, then `pio project metadata` for the flash layout. Its whole output
goes to OUT/logs/; a failure becomes an error that says what happened and what to do (the registry unreachable, a
compile error with file:line, a function the user's app lacks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from generator.core.compiler_output import diagnostics
from generator.core.errors import GenError, ToolError, UserError
from generator.core.external_tools import platformio_environment
from generator.firmware.render import missing_app_functions, user_app_path
from generator.firmware_build.flashing import bootloader_offset
from generator.firmware_build.plan import Image, pio_metadata_args, pio_run_args
from generator.output.manifest import hex_offset, parse_offset

DEFAULT_APP_OFFSET = 0x10000           # ESP-IDF and Arduino default, when the platform does not say
FIRMWARE_IMAGE = "firmware.bin"
BOOTLOADER_IMAGE = "bootloader.bin"
PARTITIONS_IMAGE = "partitions.bin"
FAILURE_TAIL_LINES = 20

_INSTALLING = re.compile(r"(?:Platform|Tool|Library|Package) Manager: Installing (.+)")
_OFFLINE = re.compile(r"HTTPClientError|InternetConnectionError|not connected to the Internet|"
                      r"NameResolutionError|Max retries exceeded|Temporary failure in name resolution")
_MAX_ERRORS_SHOWN = 8


def display_path(path: Path) -> str:
    """A path as the user can open it from where they are: relative when it lies below the working directory."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def tail(text: str, lines: int = FAILURE_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def compiler_errors(log_text: str, project_dir: Path) -> list[str]:
    """gcc-style `file:line:col: error: message` lines of a PlatformIO log, paths shown as the user can open them."""
    found = []
    for error in diagnostics(log_text, "error"):
        path = Path(error.path)
        path = path if path.is_absolute() else project_dir / path
        line = f"{error.where(display_path(path))}: error: {error.message}"
        if line not in found:
            found.append(line)
    return found


def explain_build_failure(image: Image, log_text: str, returncode: int, log_path: Path) -> GenError:
    log = display_path(log_path)
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
            f"{display_path(image.project_dir)} -e {image.env}`). Full log: {log}"
        )
    missing = missing_app_functions(log_text, image.project_dir, image.target.framework)
    if missing is not None:
        return missing
    errors = compiler_errors(log_text, image.project_dir)
    if errors:
        shown = "\n".join("  " + line for line in errors[:_MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - _MAX_ERRORS_SHOWN} more" if len(errors) > _MAX_ERRORS_SHOWN else ""
        yours = user_app_path(image.project_dir, image.target.framework)
        return ToolError(
            f"the firmware for {image.describe()} does not compile:\n{shown}{more}\n"
            f"If the error is in your app code ({yours}), fix it there and build again; anything else is "
            f"generated, so change the spec rather than the file, or report it with the full log: {log}"
        )
    return ToolError(
        f"PlatformIO failed (exit {returncode}) building {image.describe()}. The end of its log:\n{tail(log_text)}\n"
        f"Full log: {log}"
    )


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


def stale_sdkconfig(project_dir: Path, env: str) -> UserError | None:
    """ESP-IDF reads sdkconfig.defaults only when PlatformIO first creates sdkconfig.<env>: an sdkconfig made before
    a setting changed (ota: switched on, another NTP server) keeps the old value, and the firmware would be built
    against a configuration gen did not write. The error naming what it contradicts, or None."""
    defaults, existing = project_dir / "sdkconfig.defaults", project_dir / f"sdkconfig.{env}"
    if not defaults.is_file() or not existing.is_file():
        return None
    have: dict[str, str] = {}
    for line in existing.read_text(errors="replace").splitlines():
        unset = re.match(r"^# (CONFIG_\w+) is not set$", line.strip())
        if unset:
            have[unset.group(1)] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            name, value = line.strip().split("=", 1)
            have[name] = value
    contradicted = []
    for line in defaults.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.strip().split("=", 1)
            if name in have and have[name] != value:     # an option it does not state is not visible there
                contradicted.append(f"{name}={value} (it has {have[name]})")
    if not contradicted:
        return None
    shown = ", ".join(contradicted[:4]) + (f" and {len(contradicted) - 4} more" if len(contradicted) > 4 else "")
    return UserError(f"{display_path(existing)} was made before sdkconfig.defaults changed and contradicts it: "
                     f"{shown}. PlatformIO reads sdkconfig.defaults only when it creates that file.",
                     hint=f"delete {display_path(existing)} (gen made neither it nor anything in it you need to keep, "
                          "unless you ran menuconfig) and build again")


def build_image(image: Image, *, pio: str, log_path: Path, timer: BuildTimer,
                on_progress: Callable[[str], None] | None = None) -> BuiltImage:
    """`pio run`, then `pio project metadata` for the flash layout. Raises ToolError with the reason on failure."""
    stale = stale_sdkconfig(image.project_dir, image.env)
    if stale is not None:
        raise stale
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
                    f"PlatformIO may be too old (6.1 or newer is needed). Full log: {display_path(log_path)}")


def read_build_outputs(image: Image, metadata: dict[str, Any], log_path: Path) -> BuiltImage:
    """Every image to flash and its offset, from PlatformIO's metadata (extra.flash_images, application_offset)."""
    extra = metadata.get("extra") or {}
    program = Path(metadata.get("prog_path") or image.build_dir / "firmware.elf")
    files: dict[int, tuple[str, Path]] = {
        parse_offset(extra.get("application_offset", DEFAULT_APP_OFFSET)):
            (FIRMWARE_IMAGE, program.with_suffix(".bin")),
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
                            f"the device cannot be flashed from the artifacts. Full log: {display_path(log_path)}")
    repeated = {name for name in names if names.count(name) > 1}
    if repeated:  # two extra images with one file name: keep both, told apart by their offsets
        files = {offset: (f"{hex_offset(offset)}-{name}" if name in repeated else name, path)
                 for offset, (name, path) in files.items()}
    missing = [path for _, path in files.values() if not path.is_file()]
    if missing:
        raise ToolError(f"PlatformIO reported {display_path(missing[0])} as a flash image of {image.env}, but it "
                        f"does not exist. Full log: {display_path(log_path)}")
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
