"""Fix lines name what the user typed: a hint's `SPEC` becomes the spec path of the command line, and its `ID` the
device given with --device, so a fix can be pasted as it is (modules below the CLI write the placeholders)."""

from __future__ import annotations

import re
import shlex
from typing import Sequence

_SPEC = re.compile(r"(?<![\w./-])SPEC(?![\w-])")
_ID = re.compile(r"(?<![\w./-])ID(?![\w-])")
SPEC_SUFFIXES = (".yaml", ".yml")


def command_spec(argv: Sequence[str]) -> str | None:
    """The spec a command line names: the first argument that is a YAML file name and not an option's value."""
    for index, arg in enumerate(argv):
        if arg.startswith("-") or not arg.endswith(SPEC_SUFFIXES):
            continue
        if index and argv[index - 1] in ("--secrets", "--credentials"):
            continue
        return arg
    return None


def command_device(argv: Sequence[str]) -> str | None:
    """The device given with --device ID (or --device=ID)."""
    for index, arg in enumerate(argv):
        if arg == "--device" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--device="):
            return arg.split("=", 1)[1]
    return None


def filled(text: str, argv: Sequence[str]) -> str:
    """`text` with SPEC and ID replaced by the spec and device of this command line (each only when it names one)."""
    spec = command_spec(argv)
    if spec is not None:
        text = _SPEC.sub(lambda _: shlex.quote(spec), text)
    device = command_device(argv)
    if device is not None:
        text = _ID.sub(lambda _: shlex.quote(device), text)
    return text
