"""The programs `gen build`, `gen flash` and `gen monitor` run: PlatformIO and esptool, found on PATH or beside gen
(a venv or pipx install keeps them there), with a message that says how to install the one that is missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from generator.core.errors import ToolError


def _install_bin_dir() -> Path:
    """Where pip put our own dependencies' commands (pio, esptool): next to the interpreter running gen."""
    return Path(sys.executable).parent


def find_program(name: str) -> str | None:
    """The program on PATH, else the one installed beside gen (a pipx or venv install keeps it there)."""
    return shutil.which(name) or shutil.which(name, path=str(_install_bin_dir()))


def _required(name: str, missing: str) -> str:
    """The program `name` (find_program), or a ToolError saying `missing`: what it is for and how to install it."""
    program = find_program(name)
    if program is None:
        raise ToolError(missing)
    return program


def require_platformio() -> str:
    return _required("pio", "PlatformIO is not installed (no `pio` on PATH), so the firmware cannot be built, flashed "
                     "or monitored. Install it into the environment gen runs in (`pip install platformio`), or add the "
                     "directory that holds `pio` to PATH, then run the command again.")


def require_esptool() -> str:
    return _required("esptool", "esptool is not installed (no `esptool` on PATH); it merges and flashes the images. "
                     "Install it into the environment gen runs in (`pip install esptool`), or add its directory to "
                     "PATH, then run again.")


def require_espsecure() -> str:
    return _required("espsecure", "espsecure is not installed (no `espsecure` on PATH); it signs and verifies OTA "
                     "images. It comes with esptool: install that into the environment gen runs in (`pip install "
                     "esptool`), then run again.")


def platformio_environment() -> dict[str, str]:
    return {**os.environ, "PLATFORMIO_DISABLE_COLOR": "true"}
