"""The firmware version a spec builds: `firmware.version`, else `git describe --tags --always --dirty` of the spec's
folder, else 0.0.0. It becomes ESP-IDF's PROJECT_VER (esp_app_desc_t.version, 32 bytes with the NUL: ESP-IDF cuts
longer ones, components/esp_app_format/CMakeLists.txt), the version the device reports, and the one OTA announces."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

VERSION_MAX = 31                              # esp_app_desc_t.version[32], NUL included
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
UNKNOWN_VERSION = "0.0.0"
GIT_TIMEOUT_S = 10


def version_problem(version: str) -> str | None:
    """Why `version` cannot be a firmware version, or None."""
    if len(version) > VERSION_MAX:
        return (f"{version!r} is {len(version)} characters; esp_app_desc_t holds a version of at most "
                f"{VERSION_MAX}")
    if not VERSION_PATTERN.match(version):
        return (f"{version!r} may hold only letters, digits and '.', '+', '_', '-' (starting with a letter or "
                "digit): it is written into C, CMake and JSON")
    return None


def project_version(directory: Path) -> str:
    """`git describe --tags --always --dirty` of the folder, cut to VERSION_MAX and to the characters a version may
    hold; UNKNOWN_VERSION outside a git work tree or without git."""
    try:
        described = subprocess.run(["git", "-C", str(directory), "describe", "--tags", "--always", "--dirty"],
                                   capture_output=True, text=True, timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN_VERSION
    text = re.sub(r"[^0-9A-Za-z.+_-]", "_", described.stdout.strip())[:VERSION_MAX].lstrip(".+_-")
    return text if described.returncode == 0 and text else UNKNOWN_VERSION
