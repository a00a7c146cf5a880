"""Compile a generated PlatformIO firmware project for Linux, against the host runtime.

The runtime (templates/host/) implements the device APIs the firmware uses, with the real headers'
names and signatures; see templates/host/README.md. It is compiled once into a static library,
cached by the hash of its sources, flags and compiler. Each firmware binary is cached by the hash of
its own sources and the runtime's, so a rebuild of unchanged sources costs a few hashes; the 64 most
recently used binaries are kept.

Public API: `compile_firmware(firmware_dir, framework, cache_dir) -> Path` (the executable).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from generator.core.compiler_output import Diagnostic, diagnostics, first_diagnostic, normalized_path, normalized_paths
from generator.core.errors import ToolError, UserError
from generator.core.files import PRIVATE_DIR_MODE, ensure_dir
from generator.core.locks import exclusive_lock
from generator.core.paths import HOST_RUNTIME_DIR
from generator.firmware.fingerprint import outside_includes
from generator.firmware.flags import FRAMEWORK_FLAGS, GEN_WARNINGS
from generator.firmware.render import missing_app_functions
from generator.simulate.host_project import SOURCE_SUFFIXES, FirmwareProject, read_project
from generator.spec.catalogue import FRAMEWORKS

log = logging.getLogger(__name__)   # what the user should know (the CLI prints it)


Progress = Callable[[str], None]      # what the build is doing now, e.g. "compiling app.cpp (3 of 12)"


def _no_progress(_: str) -> None:
    pass


INSTALL_HINT = "apt-get install g++ libmbedtls-dev"


CXX_STANDARD = "-std=gnu++17"                          # the runtime's own sources


# The firmware's sources: the framework's own standard, warnings and optimisation (generator.firmware.flags),
# gen's -Wall -Wextra on top, debug info; any warning fails the build.
FIRMWARE_DEBUG_INFO = ("-g",)


RUNTIME_FLAGS = ("-O1", "-Wall", "-Wextra", "-fPIC")  # no -g: debug info for the STL doubles the build time


LINK_LIBRARIES = ("-lmbedtls", "-lmbedx509", "-lmbedcrypto", "-pthread")


# What the real build systems define for each framework (the parts firmware may test).
FRAMEWORK_DEFINES = {
    "arduino": ("ARDUINO=10819", "ARDUINO_ARCH_ESP32", "ESP32", "ESP_PLATFORM", "ARDUINO_ESP32_DEV",
                'ARDUINO_BOARD="ESP32_DEV"', "GEN_HOST_BUILD=1"),
    "espidf": ("ESP_PLATFORM", 'IDF_VER="v5.5.3"', "GEN_HOST_BUILD=1"),
}


MAIN_SOURCE = {"arduino": "common/main_arduino.cpp", "espidf": "common/main_idf.cpp"}




FIRMWARE_CACHE_ENTRIES = 64


FIRMWARE_CACHE_GRACE_S = 15 * 60


PRIVATE_EXECUTABLE = 0o700      # a `secrets: embed` build holds the device's private key


@dataclass(frozen=True)
class Toolchain:
    cxx: str
    cc: str
    version: str


def compile_firmware(firmware_dir: Path, framework: str, cache_dir: Path,
                     on_progress: Progress = _no_progress) -> Path:
    """Builds firmware_dir for Linux and returns the executable (cached by content). `on_progress` hears each
    source as it is compiled ("compiled app.cpp, 3 of 12")."""
    if framework not in FRAMEWORKS:
        raise UserError(f"unknown framework {framework!r}", hint=f"use one of: {', '.join(FRAMEWORKS)}")
    toolchain = find_toolchain()
    project = read_project(Path(firmware_dir).resolve(), framework)
    cache_dir = Path(cache_dir).resolve()
    ensure_dir(cache_dir, PRIVATE_DIR_MODE)   # an older cache made 0755 is closed here
    library = build_runtime_library(toolchain, cache_dir, on_progress)
    key = _hash_firmware(project, toolchain, library)
    out_dir = cache_dir / f"firmware-{key[:24]}"
    executable = out_dir / "firmware"
    if executable.exists():
        os.utime(out_dir)  # most recently used: kept by _prune_firmware_cache
        _make_private(out_dir, executable)
        return executable
    with exclusive_lock(cache_dir / f"firmware-{key[:24]}.lock"):
        if executable.exists():
            return executable
        work = Path(tempfile.mkdtemp(prefix="fw-", dir=cache_dir))
        try:
            _build_firmware(project, toolchain, library, work, on_progress)
            ensure_dir(out_dir, PRIVATE_DIR_MODE)
            os.chmod(work / "firmware", PRIVATE_EXECUTABLE)
            os.replace(work / "firmware", executable)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _prune_firmware_cache(cache_dir)
    return executable


def _make_private(folder: Path, executable: Path) -> None:
    try:
        if (folder.stat().st_mode & 0o777) != PRIVATE_DIR_MODE:
            os.chmod(folder, PRIVATE_DIR_MODE)
        if (executable.stat().st_mode & 0o777) != PRIVATE_EXECUTABLE:
            os.chmod(executable, PRIVATE_EXECUTABLE)
    except FileNotFoundError:      # pruned meanwhile by another gen
        pass


def _used_at(entry: Path) -> float | None:
    """When a cached binary was last used; None if another gen pruned it meanwhile."""
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return None


def _prune_firmware_cache(cache_dir: Path) -> None:
    """Keeps the FIRMWARE_CACHE_ENTRIES most recently used firmware binaries, and every one used in the last
    FIRMWARE_CACHE_GRACE_S: a binary just handed to a caller (which runs it next, perhaps in another process) is
    never removed under it by another build that shares the cache."""
    stamped = sorted(((mtime, path) for path in cache_dir.glob("firmware-*")
                      if path.is_dir() and (mtime := _used_at(path)) is not None), reverse=True)
    recent = time.time() - FIRMWARE_CACHE_GRACE_S
    for _, kept in stamped[:FIRMWARE_CACHE_ENTRIES]:     # builds an older gen left 0755 are closed too
        if (kept / "firmware").is_file():
            _make_private(kept, kept / "firmware")
    for used_at, stale in stamped[FIRMWARE_CACHE_ENTRIES:]:
        if used_at >= recent:
            continue
        shutil.rmtree(stale, ignore_errors=True)
        (cache_dir / f"{stale.name}.lock").unlink(missing_ok=True)


@lru_cache(maxsize=1)
def find_toolchain() -> Toolchain:
    cxx, cc = shutil.which("g++"), shutil.which("gcc")
    if not cxx or not cc:
        raise ToolError("g++ was not found: the host build of the firmware needs it", hint=INSTALL_HINT)
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    return Toolchain(cxx=cxx, cc=cc, version=version[0] if version else "g++ (unknown version)")


def _check_mbedtls_headers(toolchain: Toolchain) -> None:
    probe = subprocess.run(
        [toolchain.cxx, "-x", "c++", "-E", "-o", os.devnull, "-"],
        input="#include <mbedtls/ssl.h>\n#include <mbedtls/version.h>\n"
        "#if MBEDTLS_VERSION_MAJOR != 2\n#error mbedTLS 2.x is required\n#endif\n",
        capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        detail = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "mbedtls/ssl.h not found"
        raise ToolError(f"mbedTLS 2.28 development headers are missing ({detail})", hint=INSTALL_HINT)


def runtime_sources() -> tuple[Path, ...]:
    """The runtime's library sources (main() lives apart: it is compiled with the firmware's flags)."""
    mains = {HOST_RUNTIME_DIR / m for m in MAIN_SOURCE.values()}
    found = [p for d in ("common", "idf", "arduino") for p in sorted((HOST_RUNTIME_DIR / d).glob("*.cpp"))]
    return tuple(p for p in found if p not in mains)


def _runtime_files() -> list[Path]:
    return sorted(p for p in HOST_RUNTIME_DIR.rglob("*") if p.is_file() and p.suffix in (".h", ".cpp", ".c"))


def _runtime_include_flags(framework: str | None) -> list[str]:
    dirs = ["common", "idf", "arduino"] if framework is None else (
        ["arduino", "idf"] if framework == "arduino" else ["idf"])
    return [f"-I{HOST_RUNTIME_DIR / d}" for d in dirs]


def build_runtime_library(toolchain: Toolchain, cache_dir: Path, on_progress: Progress = _no_progress) -> Path:
    """Compiles the runtime into cache_dir/runtime-<hash>/libgenhost.a, once per content."""
    digest = hashlib.sha256()
    digest.update(toolchain.version.encode())
    digest.update(" ".join(RUNTIME_FLAGS + (CXX_STANDARD,)).encode())
    for path in _runtime_files():
        digest.update(str(path.relative_to(HOST_RUNTIME_DIR)).encode() + b"\0" + path.read_bytes())
    key = digest.hexdigest()[:24]
    library = cache_dir / f"runtime-{key}" / "libgenhost.a"
    if library.exists():
        return library
    ensure_dir(cache_dir, PRIVATE_DIR_MODE)
    with exclusive_lock(cache_dir / f"runtime-{key}.lock"):
        if library.exists():
            return library
        _check_mbedtls_headers(toolchain)
        work = Path(tempfile.mkdtemp(prefix="runtime-", dir=cache_dir))
        try:
            flags = [CXX_STANDARD, *RUNTIME_FLAGS, *_runtime_include_flags(None)]
            jobs = [
                [toolchain.cxx, *flags, "-c", str(src), "-o", str(work / f"{src.parent.name}_{src.stem}.o")]
                for src in runtime_sources()
            ]
            _run_parallel(jobs, what="the host runtime", on_progress=on_progress)
            objects = sorted(str(p) for p in work.glob("*.o"))
            _run([shutil.which("ar") or "ar", "rcs", str(work / "libgenhost.a"), *objects], what="the host runtime")
            ensure_dir(library.parent, PRIVATE_DIR_MODE)
            os.replace(work / "libgenhost.a", library)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return library


def _hash_firmware(project: FirmwareProject, toolchain: Toolchain, library: Path) -> str:
    """Content hash of what the binary is made of. Paths count relative to the project, so the same project
    generated into another directory (another OUT, a test's tmp dir) reuses the binary."""
    root = str(project.root)
    digest = hashlib.sha256()
    digest.update(f"{project.framework}\0{toolchain.version}\0{library}\0".encode())
    flags = " ".join(firmware_compile_flags(project, "c++") + firmware_compile_flags(project, "c"))
    digest.update(flags.replace(root, "<project>").encode())
    files: set[Path] = {project.root / "platformio.ini", project.root / "sdkconfig.defaults"}
    for directory in project.include_dirs:
        files.update(p for p in directory.rglob("*") if p.is_file())
    files.update(project.sources)
    files.update(path for path, _ in project.embedded)
    for path in sorted(files):
        if path.is_file():
            digest.update(os.path.relpath(path, project.root).encode() + b"\0" + path.read_bytes())
    # What the sources include from outside the project (the user's app source), by its path relative to it.
    for path in outside_includes(project.sources, project.root):
        digest.update(os.path.relpath(path, project.root).encode() + b"\0" + path.read_bytes())
    main = HOST_RUNTIME_DIR / MAIN_SOURCE[project.framework]
    digest.update(b"main\0" + main.read_bytes())
    return digest.hexdigest()


def firmware_compile_flags(project: FirmwareProject, language: str) -> list[str]:
    """Everything a firmware source in `language` ("c" or "c++") is compiled with, but the compiler: the framework's
    own flags (generator.firmware.flags), gen's warnings, the project's defines and the runtime's headers."""
    flags = [*FRAMEWORK_FLAGS[project.framework].for_language(language), *GEN_WARNINGS, *FIRMWARE_DEBUG_INFO]
    flags += [f"-D{d}" for d in FRAMEWORK_DEFINES[project.framework] + project.defines]
    flags += list(project.options)
    flags += [f"-I{d}" for d in project.include_dirs]
    flags += _runtime_include_flags(project.framework)
    flags += ["-include", str(HOST_RUNTIME_DIR / "common" / "gen_host_compat.h")]
    flags += [f"-fmacro-prefix-map={project.root}/="]  # __FILE__ = "src/main.c", wherever the project lies
    return flags


def _build_firmware(project: FirmwareProject, toolchain: Toolchain, library: Path, work: Path,
                    on_progress: Progress = _no_progress) -> None:
    jobs = []
    objects = []
    for index, src in enumerate(project.sources):
        language = "c" if src.suffix == ".c" else "c++"
        compiler = toolchain.cc if language == "c" else toolchain.cxx
        obj = work / f"{index:03d}_{src.stem}.o"
        objects.append(obj)
        jobs.append([compiler, *firmware_compile_flags(project, language), "-c", str(src), "-o", str(obj)])
    runtime_jobs = []
    main_obj = work / "host_main.o"
    runtime_jobs.append([toolchain.cxx, *firmware_compile_flags(project, "c++"), f"-I{HOST_RUNTIME_DIR / 'common'}",
                         "-c", str(HOST_RUNTIME_DIR / MAIN_SOURCE[project.framework]), "-o", str(main_obj)])
    if project.embedded:
        asm = work / "embedded_files.S"
        asm.write_text(_embed_assembly(project))
        runtime_jobs.append([toolchain.cc, "-c", str(asm), "-o", str(work / "embedded_files.o")])
        objects.append(work / "embedded_files.o")
    _run_parallel(jobs + runtime_jobs, what=f"the firmware in {project.root}", no_warnings=len(jobs),
                  explain=lambda stderr: registry_library_error(stderr, project),
                  fatal_warning=lambda warning: is_gens_code(warning.path, project.root), on_progress=on_progress)
    on_progress("linking the firmware")
    link = subprocess.run([toolchain.cxx, *map(str, objects), str(main_obj), str(library), *LINK_LIBRARIES,
                           "-o", str(work / "firmware")], capture_output=True, text=True, check=False)
    if link.returncode != 0:
        raise missing_app_functions(link.stderr, project.root, project.framework) \
            or _compile_error(link.stderr, f"the firmware in {project.root}")


def _embed_assembly(project: FirmwareProject) -> str:
    """Symbols for embedded files: `_binary_<basename>_start/_end` (ESP-IDF) and, under another name,
    `_binary_<path>_start/_end` (PlatformIO Arduino, path relative to the project). Text files get a NUL."""
    out = ['.section .rodata', '.balign 4']
    for path, is_text in project.embedded:
        names = {re.sub(r"[^A-Za-z0-9_]", "_", path.name),
                 re.sub(r"[^A-Za-z0-9_]", "_", str(path.relative_to(project.root)))}
        for name in sorted(names):
            out += [f".global _binary_{name}_start", f"_binary_{name}_start:"]
        out.append(f'.incbin "{path}"')
        if is_text:
            out.append(".byte 0")
        for name in sorted(names):
            out += [f".global _binary_{name}_end", f"_binary_{name}_end:"]
        size = path.stat().st_size + (1 if is_text else 0)
        for name in sorted(names):
            out += [f".global {name}_length", f"{name}_length:", f".long {size}"]
        out.append(".balign 4")
    out.append('.section .note.GNU-stack,"",@progbits')
    return "\n".join(out) + "\n"


def _run(cmd: list[str], *, what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise _compile_error(result.stderr, what)


def is_gens_code(path: str, project_root: Path) -> bool:
    """Whether a diagnostic's file is gen's (the generated project, gen_link, the host runtime), not the user's own
    code (the app's src/ and lib/ next to the spec, which the project includes from outside)."""
    resolved = Path(os.path.normpath(Path(project_root) / path))
    return resolved.is_relative_to(project_root) or resolved.is_relative_to(HOST_RUNTIME_DIR)


def _run_parallel(jobs: list[list[str]], *, what: str, no_warnings: int = 0,
                  explain: Callable[[str], UserError | None] = lambda stderr: None,
                  fatal_warning: Callable[[Diagnostic], bool] = lambda warning: True,
                  on_progress: Progress = _no_progress) -> None:
    """Runs the compile jobs; any failure is an error, and so is a warning from the first `no_warnings` jobs that
    `fatal_warning` says is (gen's own code stays warning-free; the user's warnings are shown, once each, and the
    build goes on). `explain` may turn a failure's compiler output into the error a user can act on."""
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    done = [0]
    lock = threading.Lock()

    def compile_one(cmd: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        source = next((Path(arg).name for arg in cmd if Path(arg).suffix in (*SOURCE_SUFFIXES, ".S")), "a source")
        with lock:
            done[0] += 1
            on_progress(f"compiled {source} ({done[0]} of {len(jobs)}, {what})")
        return result

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(compile_one, jobs))
    failed = []
    yours: dict[str, None] = {}
    for index, result in enumerate(results):
        warnings = diagnostics(result.stderr, "warning") if index < no_warnings else []
        if result.returncode != 0 or any(fatal_warning(w) for w in warnings):
            failed.append(result.stderr)
            continue
        for warning in warnings:
            yours[f"{warning.where(normalized_path(warning.path))}: warning: {warning.message}"] = None
    if failed:
        raise explain("\n".join(failed)) or _compile_error(failed[0], what)
    for line in yours:
        log.warning(f"{line} (your code: shown, not fatal in the host build)")


_MISSING_HEADER = re.compile(r"^(?P<where>[^\s:]+:\d+):\d+: fatal error: (?P<header>[^:\s]+): "
                             r"No such file or directory", re.MULTILINE)


# The example whose README shows a registry library kept out of the host build, per framework.
PRODUCT_EXAMPLE = {"arduino": "greenhouse-product", "espidf": "greenhouse-product-espidf"}


def registry_library_error(stderr: str, project: FirmwareProject) -> UserError | None:
    """When a source includes a header the host build cannot have because it comes with a registry library of the
    spec's `libraries:` (the real build downloads it; gen simulate compiles for Linux, offline): the one error that
    names the libraries, the header and the way to keep that code out of the host build. Else None."""
    missing = list(dict.fromkeys((m.group("header"), m.group("where")) for m in _MISSING_HEADER.finditer(stderr)))
    if not missing or not project.registry:
        return None
    headers = ", ".join(f"<{header}> ({where})" for header, where in missing)
    libraries = ", ".join(project.registry)
    return UserError(
        f"the host build (gen simulate) cannot compile code that uses {headers}: it comes from the registry library "
        f"of libraries: ({libraries}), which the real build downloads, and the host build, compiling for Linux "
        "offline, cannot have",
        hint="keep that code out of the host build: wrap the #include and the calls in `#ifndef GEN_HOST_BUILD` "
             "(the host build defines GEN_HOST_BUILD), with a stand-in in the `#else` branch, e.g. a fixed reading "
             f"(README: Libraries, and the tutorial in projects/examples/{PRODUCT_EXAMPLE[project.framework]})")


def _compile_error(stderr: str, what: str) -> ToolError:
    """The first real diagnostic (compiler or linker) with its file:line, paths normalized, then the lines around
    it; a fix line that fits what it is (an error, an undefined reference, a warning in gen's code)."""
    lines = [normalized_paths(line) for line in stderr.strip().splitlines()]
    first = first_diagnostic(stderr)
    relevant = [line for line in lines if (" error: " in line or " warning: " in line or "undefined reference" in line
                                           or "multiple definition" in line or ": in function" in line)
                and not line.startswith("collect2:")]
    shown = relevant[:8] or lines[-12:]
    where = ""
    if first is not None:
        where = f" at {first.where(normalized_path(first.path))}: {first.kind}: {first.message}"
    message = f"g++ could not build {what}{where}\n  " + "\n  ".join(shown)
    if ("mbedtls/" in stderr and "No such file" in stderr) or "cannot find -lmbed" in stderr:
        return ToolError(message, hint=INSTALL_HINT)
    if first is not None and first.message.startswith("undefined reference"):
        return ToolError(message, hint="define what the linker names (a function declared but not written, or in "
                                       "a source file outside src/), or add the library that has it")
    if first is not None and first.kind == "warning":
        return ToolError(message, hint="gen's own code must build without warnings (-Wall -Wextra): report it, "
                                       "with the line shown")
    return ToolError(message, hint="fix the first error shown, at the file and line it names")
