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


# ---------------------------------------------------------------------------------------------- order

# The order anti-rollback uses, the same as the firmware's (templates/gen_link/common/version_order.h): SemVer 2.0
# precedence, a leading 'v' allowed, git describe's "N commits after a tag" after that tag, build metadata ignored.
_NUMBER = r"([0-9]{1,9})"
_IDENTIFIERS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(rf"^v?{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-({_IDENTIFIERS}))?(?:\+{_IDENTIFIERS})?$")
_DESCRIBE = re.compile(r"^(?:([0-9]{1,9})-g[0-9a-f]{4,40}(-dirty)?|(dirty))$")
PRE_RELEASE, RELEASE, AFTER_RELEASE = 0, 1, 2


def _order_key(version: str) -> tuple | None:
    match = _VERSION.match(version)
    if match is None:
        return None
    numbers = tuple(int(match[i]) for i in (1, 2, 3))
    pre = match[4]
    if pre is None:
        return (*numbers, RELEASE, ())
    describe = _DESCRIBE.match(pre)
    if describe is not None:
        commits = int(describe[1]) if describe[1] is not None else 0
        return (*numbers, AFTER_RELEASE, (commits, 1 if (describe[2] or describe[3]) else 0))
    identifiers = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return (*numbers, PRE_RELEASE, identifiers)


def version_order(a: str, b: str) -> int | None:
    """-1 when `a` comes before `b`, 0 for the same precedence, 1 after; None when they cannot be ordered (either is
    not MAJOR.MINOR.PATCH[-pre-release][+build])."""
    x, y = _order_key(a), _order_key(b)
    if x is None or y is None:
        return None
    return (x > y) - (x < y)
