"""Where a firmware project finds the user's code, and how that is read back.

The user's application is a directory next to the spec, in git: every .c/.cpp/.h under `src/` is compiled, the
project's own PlatformIO libraries are the folders of `lib/`, its ESP-IDF components the folders of `components/`.
A generated firmware project (under OUT) points at them by relative paths, the way each build system expects:

- Arduino (PlatformIO): `[platformio] src_dir = <app root>/src`, each library a `lib_deps` entry
  `NAME=symlink://<app root>/lib/NAME`, and `build_src_filter` leaving out `app.c`, the ESP-IDF starter.
- ESP-IDF: the main component's CMakeLists.txt sets `GEN_APP_DIR` to `<app root>/src` and globs it (leaving out
  `app.cpp`, the Arduino starter); the project's CMakeLists.txt adds `<app root>/components` to
  EXTRA_COMPONENT_DIRS.

The spec's `libraries:` reach the same files: Arduino lib_deps entries (a folder of the user's as NAME=symlink://),
ESP-IDF main/idf_component.yml dependencies (a folder as `path:`); `build_flags:` reach platformio.ini's build_flags
(Arduino) or the project's COMPILE_OPTIONS (ESP-IDF).

`app_root_path` makes the relative path (refusing one a build file cannot carry); `user_code` reads a project's
files back to what it compiles besides gen's own (the host build and the fingerprint of an image use it).
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from generator.core.errors import UserError

APP_SOURCE_DIR = "src"          # the user's application, relative to the spec's folder
APP_LIBRARIES_DIR = "lib"       # the user's own PlatformIO libraries, one folder each
APP_COMPONENTS_DIR = "components"   # the user's own ESP-IDF components, one folder each
# Each framework's build leaves out the other framework's starter file (a spec may use both frameworks).
# The first file of the user's app, relative to the spec's folder: created once by `gen generate`, never overwritten.
USER_APP_SOURCE = {"arduino": "src/app.cpp", "espidf": "src/app.c"}
OTHER_STARTER = {"arduino": "app.c", "espidf": "app.cpp"}
# Where the ESP-IDF project keeps its main component (the glob of the user's src/).
IDF_MAIN_COMPONENT = "main"

_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+@-]+$")
_IDF_APP_DIR = re.compile(r'^set\(GEN_APP_DIR "\$\{CMAKE_CURRENT_LIST_DIR\}/([^"]+)"\)', re.MULTILINE)
_IDF_COMPONENT_DIRS = re.compile(r'^\s*list\(APPEND EXTRA_COMPONENT_DIRS "\$\{CMAKE_CURRENT_LIST_DIR\}/([^"]+)"\)',
                                 re.MULTILINE)
_LOCAL_LIB_DEP = re.compile(r"^(?:[^=\s]+=)?(?:symlink|file)://(.+)$")
_IDF_COMPILE_OPTION = re.compile(r'^idf_build_set_property\(COMPILE_OPTIONS "([^"]+)" APPEND\)', re.MULTILINE)


# Registry libraries the host runtime implements itself (templates/host/): the catalogue's own lib_deps.
HOST_RUNTIME_LIBRARIES = ("knolleary/PubSubClient",)
IDF_COMPONENT_MANIFEST = f"{IDF_MAIN_COMPONENT}/idf_component.yml"


@dataclass(frozen=True)
class UserCode:
    """What a firmware project compiles besides gen's own files, read back from its build files."""
    app: Path | None                     # the user's src/
    libraries: tuple[Path, ...]          # PlatformIO libraries (lib_deps symlink:// or file://)
    component_dirs: tuple[Path, ...]     # ESP-IDF: folders of components (EXTRA_COMPONENT_DIRS)
    components: tuple[Path, ...]         # ESP-IDF: single components (idf_component.yml `path:` dependencies)
    registry: tuple[str, ...]            # registry libraries the build downloads (not the host runtime's own)
    compile_options: tuple[str, ...]     # ESP-IDF: COMPILE_OPTIONS the project adds (Arduino: build_flags)
    excluded: tuple[str, ...]            # file names under `app` the build leaves out

    def folders(self) -> tuple[Path, ...]:
        return tuple(d for d in (self.app, *self.libraries, *self.component_dirs, *self.components) if d is not None)


def app_root_path(firmware_dir: Path, spec_dir: Path) -> str:
    """The spec's folder as the generated project's build files name it: relative to firmware_dir, POSIX."""
    relative = Path(os.path.relpath(Path(spec_dir).absolute(), Path(firmware_dir).absolute())).as_posix()
    if not _SAFE_PATH.match(relative):
        raise UserError(f"the path from {firmware_dir} to {spec_dir} ({relative}) cannot be written in "
                        "platformio.ini and CMakeLists.txt",
                        hint="use folders whose names have only letters, digits and . _ - + @")
    return relative


def app_folders(spec_dir: Path, parent: str) -> tuple[str, ...]:
    """The names of the user's library (parent "lib") or component ("components") folders, sorted."""
    folder = Path(spec_dir) / parent
    if not folder.is_dir():
        return ()
    names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
    for name in names:
        if not _SAFE_PATH.match(name) or "/" in name:
            raise UserError(f"{folder / name}: a folder name platformio.ini and CMake cannot carry",
                            hint="rename it with letters, digits and . _ - + @ only")
    return names


def user_code(firmware_dir: Path) -> UserCode:
    """Reads a generated project's build files back to what it compiles besides gen's own files."""
    root = Path(firmware_dir)
    app: Path | None = None
    libraries: list[Path] = []
    component_dirs: list[Path] = []
    components: list[Path] = []
    registry: list[str] = []
    options: list[str] = []
    excluded: list[str] = []
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",), strict=False)
    try:
        parser.read(root / "platformio.ini")
    except configparser.Error:
        parser = configparser.ConfigParser()
    src_dir = parser.get("platformio", "src_dir", fallback="src")
    if src_dir.startswith(".."):
        app = (root / src_dir).resolve()
    for section in parser.sections():
        if not section.startswith("env:"):
            continue
        for line in parser.get(section, "lib_deps", fallback="").splitlines():
            entry = line.strip()
            match = _LOCAL_LIB_DEP.match(entry)
            if match:
                libraries.append((root / match.group(1)).resolve())
            elif entry and not entry.startswith(HOST_RUNTIME_LIBRARIES):
                registry.append(entry)
        for token in parser.get(section, "build_src_filter", fallback="").split():
            if token.startswith("-<") and token.endswith(">"):
                excluded.append(token[2:-1])
    main_cmake = root / IDF_MAIN_COMPONENT / "CMakeLists.txt"
    if main_cmake.is_file():
        text = main_cmake.read_text(encoding="utf-8")
        found = _IDF_APP_DIR.search(text)
        if found:
            app = (main_cmake.parent / found.group(1)).resolve()
        excluded += re.findall(r'list\(REMOVE_ITEM app_sources "\$\{GEN_APP_DIR\}/([^"]+)"\)', text)
    project_cmake = root / "CMakeLists.txt"
    if project_cmake.is_file():
        text = project_cmake.read_text(encoding="utf-8")
        component_dirs += [(root / d).resolve() for d in _IDF_COMPONENT_DIRS.findall(text)]
        options += _IDF_COMPILE_OPTION.findall(text)
    manifest = root / IDF_COMPONENT_MANIFEST
    if manifest.is_file():
        dependencies = (yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}).get("dependencies") or {}
        for name, requirement in dependencies.items():
            if isinstance(requirement, dict) and "path" in requirement:
                components.append((manifest.parent / requirement["path"]).resolve())
            elif name != "idf":
                registry.append(f"{name}@{requirement}" if isinstance(requirement, str) else str(name))
    return UserCode(app=app, libraries=tuple(libraries), component_dirs=tuple(component_dirs),
                    components=tuple(components), registry=tuple(registry), compile_options=tuple(options),
                    excluded=tuple(excluded))


# The spec's folder seen from a firmware project where OUT is <spec folder>/build: OUT/devices/<id>/firmware/.
DEFAULT_APP_ROOT = "../../../.."


@dataclass(frozen=True)
class AppLayout:
    """Where the user's code lies, as the project's build files name it (generator.firmware.app_layout): the
    spec's folder relative to the firmware project, and the folders found in its lib/ and components/."""
    root: str = DEFAULT_APP_ROOT
    libraries: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
