"""A generated firmware project read back the way its own build files say it builds (platformio.ini's env, build flags
and src_dir; ESP-IDF's sdkconfig.defaults and components): which sources, include folders and defines the host build
compiles. Only what the project's files say; nothing is guessed."""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from generator.core.app_image import CHIP_IDS
from generator.core.errors import UserError
from generator.firmware.app_layout import user_code
from generator.spec.catalogue import load_catalogue

SOURCE_SUFFIXES = (".c", ".cpp", ".cc", ".cxx")


@dataclass(frozen=True)
class FirmwareProject:
    """What the host build needs from a PlatformIO project, read once from its files."""

    root: Path
    framework: str
    sources: tuple[Path, ...]
    include_dirs: tuple[Path, ...]
    defines: tuple[str, ...]
    embedded: tuple[tuple[Path, bool], ...]  # (file, is_text): board_build.embed_txtfiles / embed_files
    options: tuple[str, ...] = ()           # the project's -U and -W flags (build_flags, COMPILE_OPTIONS)
    registry: tuple[str, ...] = ()          # registry libraries the real build downloads, the host build cannot


def read_project(root: Path, framework: str) -> FirmwareProject:
    """Collects sources, include dirs and defines of a PlatformIO project the way `pio run` would."""
    if not root.is_dir():
        raise UserError(f"{root}: no such firmware directory", hint="run `gen generate` first")
    ini = _read_platformio_ini(root / "platformio.ini")
    src_dir = (root / ini.get("src_dir", "src")).resolve()
    include_dir = root / ini.get("include_dir", "include")
    outside = user_code(root)
    app_dirs = [src_dir] + ([outside.app] if outside.app is not None and outside.app != src_dir else [])
    sources = [p for d in app_dirs for p in sorted(d.rglob("*"))
               if p.suffix in SOURCE_SUFFIXES and p.name not in outside.excluded]
    include_dirs = [include_dir, *app_dirs]
    lib_dir = root / "lib"
    if lib_dir.is_dir():   # PlatformIO's private libraries: lib/<name>/src/ (library.json) or lib/<name>/
        for lib in sorted(p for p in lib_dir.iterdir() if p.is_dir()):
            lib_src = lib / "src" if (lib / "src").is_dir() else lib
            include_dirs.append(lib_src)
            sources += [p for p in sorted(lib_src.rglob("*")) if p.suffix in SOURCE_SUFFIXES]
    for lib in outside.libraries:   # lib_deps = NAME=symlink://... : the user's own libraries
        lib_src = lib / "src" if (lib / "src").is_dir() else lib
        include_dirs.append(lib_src)
        sources += [p for p in sorted(lib_src.rglob("*")) if p.suffix in SOURCE_SUFFIXES]
    components = [component for components_dir in (root / "components", *outside.component_dirs)
                  if components_dir.is_dir()
                  for component in sorted(p for p in components_dir.iterdir() if (p / "CMakeLists.txt").is_file())]
    for component in [*components, *outside.components]:   # ESP-IDF: public headers in include/, the rest beside
        include_dirs += [component / "include", component]
        sources += [p for p in sorted(component.rglob("*")) if p.suffix in SOURCE_SUFFIXES]
    if not sources:
        raise UserError(f"{src_dir}: no C or C++ sources to build", hint="run `gen generate` to render the firmware")
    defines, extra_includes, options = _parse_build_flags(" ".join([ini.get("build_flags", ""),
                                                                    *outside.compile_options]), root)
    defines += target_defines(_default_env(root / "platformio.ini"))
    if framework == "espidf":
        defines += sdkconfig_defines(root / "sdkconfig.defaults")
    embedded = tuple(
        [(root / f, True) for f in ini.get("board_build.embed_txtfiles", "").split()]
        + [(root / f, False) for f in ini.get("board_build.embed_files", "").split()]
    )
    for path, _ in embedded:
        if not path.is_file():
            raise UserError(f"{root / 'platformio.ini'}: embedded file {path} does not exist",
                            hint="check board_build.embed_txtfiles / embed_files")
    return FirmwareProject(
        root=root, framework=framework, sources=tuple(sources),
        include_dirs=tuple(d for d in include_dirs + extra_includes if d.is_dir()),
        defines=tuple(defines), embedded=embedded, options=tuple(options), registry=outside.registry,
    )


def target_defines(env: str | None) -> list[str]:
    """What the chip of the project's target puts in sdkconfig.h (PlatformIO sets IDF_TARGET from the board):
    CONFIG_IDF_TARGET, CONFIG_IDF_TARGET_<CHIP>, CONFIG_IDF_FIRMWARE_CHIP_ID. None for an env outside the catalogue."""
    target = load_catalogue().get(env) if env else None
    if target is None:
        return []
    chip = target.chip
    return [f'CONFIG_IDF_TARGET="{chip}"', f"CONFIG_IDF_TARGET_{chip.upper()}=1",
            f"CONFIG_IDF_FIRMWARE_CHIP_ID=0x{CHIP_IDS[chip]:04x}"]


def _default_env(path: Path) -> str | None:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",), strict=False)
    try:
        parser.read(path)
    except configparser.Error:
        return None
    default = parser.get("platformio", "default_envs", fallback="").replace(",", " ").split()
    envs = [section[len("env:"):] for section in parser.sections() if section.startswith("env:")]
    return default[0] if default else (envs[0] if envs else None)


def _read_platformio_ini(path: Path) -> dict[str, str]:
    """Options of the default env (`[platformio] default_envs`, else the first env) with ${...} resolved."""
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",), strict=False)
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise UserError(f"{path}: cannot parse: {exc}") from exc
    envs = [s for s in parser.sections() if s.startswith("env:")]
    default = parser.get("platformio", "default_envs", fallback="").replace(",", " ").split()
    chosen = f"env:{default[0]}" if default and f"env:{default[0]}" in envs else (envs[0] if envs else None)
    options: dict[str, str] = {}
    if parser.has_section("env"):
        options.update(parser["env"])
    if chosen:
        options.update(parser[chosen])
    if parser.has_section("platformio"):
        for key in ("src_dir", "include_dir"):
            if parser.has_option("platformio", key):
                options[key] = parser.get("platformio", key)

    def resolve(value: str, depth: int = 0) -> str:
        def lookup(match: re.Match[str]) -> str:
            section, _, option = match.group(1).rpartition(".")
            section = section or "env"
            if depth < 5 and parser.has_option(section, option):
                return resolve(parser.get(section, option), depth + 1)
            return ""
        return re.sub(r"\$\{([^}]+)\}", lookup, value)

    return {k: resolve(v) for k, v in options.items()}


def _parse_build_flags(flags: str, root: Path) -> tuple[list[str], list[Path], list[str]]:
    """-D defines, -I folders, and the -U and -W options the host build passes on; other flags (the chip's, the
    optimisation) are the real toolchain's."""
    defines: list[str] = []
    includes: list[Path] = []
    options: list[str] = []
    tokens = shlex.split(flags.replace("\n", " "))
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("-D", "-I", "-U") and i + 1 < len(tokens):
            token, i = token + tokens[i + 1], i + 1
        if token.startswith("-D"):
            defines.append(token[2:])
        elif token.startswith("-I"):
            includes.append((root / token[2:]).resolve())
        elif token.startswith(("-U", "-W")):
            options.append(token)
        i += 1
    return defines, includes, options


def sdkconfig_defines(path: Path) -> list[str]:
    """CONFIG_* values of sdkconfig.defaults, as sdkconfig.h would define them."""
    if not path.is_file():
        return []
    defines = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("CONFIG_") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if value == "y":
            defines.append(f"{name}=1")
        elif value != "n":
            defines.append(f"{name}={value}")
    return defines
