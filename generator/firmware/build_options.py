"""What a device's build files say beyond gen's own facts: the spec's libraries and build flags, as PlatformIO env
options (Arduino) or component-manager dependencies (ESP-IDF), each value checked or escaped for the file it
reaches."""

from __future__ import annotations

import json
import posixpath

from generator.firmware.app_layout import APP_LIBRARIES_DIR, OTHER_STARTER, AppLayout
from generator.spec.model import Device


def env_options(device: Device, app: AppLayout) -> tuple[tuple[str, str], ...]:
    """The project's [env:...] options: the catalogue's; for Arduino with the user's libraries added to lib_deps
    (lib/ next to the spec, then the spec's `libraries:`), the spec's build_flags, and the ESP-IDF starter left out."""
    options = dict(device.target.options)
    if device.framework == "arduino":
        local = [f"{name}=symlink://{app.root}/{APP_LIBRARIES_DIR}/{name}" for name in app.libraries]
        spec = [f"{library.name}=symlink://{posixpath.normpath(f'{app.root}/{library.entry}')}"
                if library.path is not None else library.entry for library in device.libraries]
        options["lib_deps"] = "\n".join([*options.get("lib_deps", "").split("\n"), *local, *spec]).strip("\n")
        options["build_flags"] = "\n".join([*options.get("build_flags", "").split("\n"),
                                            *device.build_flags]).strip("\n")
        options["build_src_filter"] = f"+<*> -<{OTHER_STARTER['arduino']}>"
    return tuple((key, _ini_value(value)) for key, value in options.items() if value)


def idf_dependencies(device: Device, app: AppLayout) -> tuple[tuple[str, str], ...]:
    """The spec's libraries as ESP-IDF component manager dependencies of the main component: a registry component
    with its version (any, without one), a folder of the user's by its path from main/."""
    dependencies = []
    for library in device.libraries:
        if library.path is not None:
            path = posixpath.normpath(f"../{app.root}/{library.entry}")
            dependencies.append((json.dumps(library.name), "{path: " + json.dumps(path) + "}"))
        else:
            dependencies.append((json.dumps(library.registry_name), json.dumps(library.version or "*")))
    return tuple(dependencies)


def _ini_value(text: str) -> str:
    """A catalogue option as platformio.ini text: extra lines of a multi-line value are indented."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return "\n".join([""] + [f"    {line}" for line in lines if line.strip()])
