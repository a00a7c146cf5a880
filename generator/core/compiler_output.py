"""GCC's diagnostics (`file:line[:column]: [fatal ]error|warning: message`), as the host build and PlatformIO's
log print them: the one place their form is spelled."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_DIAGNOSTIC = re.compile(r"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+):(?:(?P<column>\d+):)? (?:fatal )?"
                         r"(?P<kind>error|warning): (?P<message>.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int
    column: int | None
    kind: str              # error or warning
    message: str

    def where(self, path: str | None = None) -> str:
        shown = path or self.path
        if not self.line:
            return shown
        return f"{shown}:{self.line}" + (f":{self.column}" if self.column else "")


# The linker's own: `path:line: undefined reference to `f()'` (or without a line), under "in function" lines, before
# collect2's summary "ld returned 1 exit status", which says nothing of its own.
_LINKER = re.compile(r"^(?:\S*ld(?:\.\w+)?: )?(?P<path>[^\s:][^:\n]*?):(?:(?P<line>\d+):)?(?:\(\S+\):)? "
                     r"(?P<message>(?:undefined reference to|multiple definition of) .+)$", re.MULTILINE)
_PATHS = re.compile(r"(?P<path>(?:/|\.\.?/|\w[\w.+-]*/)[^\s:'\"`()]*)")


def normalized_path(path: str, cwd: Path | None = None) -> str:
    """`a/src/../../b.cpp` as `b.cpp`: `..` resolved, and relative to `cwd` (default: the current folder) when it
    lies inside it."""
    clean = os.path.normpath(path)
    base = Path(cwd) if cwd is not None else Path.cwd()
    if os.path.isabs(clean):
        try:
            return str(Path(clean).relative_to(base))
        except ValueError:
            return clean
    return clean


def normalized_paths(text: str, cwd: Path | None = None) -> str:
    """Every path in a compiler's line, normalized (see normalized_path)."""
    return _PATHS.sub(lambda m: normalized_path(m["path"], cwd) if "/" in m["path"] else m["path"], text)


def first_diagnostic(output: str) -> Diagnostic | None:
    """The first real problem a compiler or linker reports: its first error, else the linker's first undefined
    reference or multiple definition (collect2's summary line never), else its first warning."""
    errors = diagnostics(output, "error")
    if errors:
        return errors[0]
    linker = _LINKER.search(output)
    if linker is not None:
        return Diagnostic(linker["path"], int(linker["line"]) if linker["line"] else 0, None, "error",
                          linker["message"].strip())
    warnings = diagnostics(output, "warning")
    return warnings[0] if warnings else None


def diagnostics(output: str, kind: str | None = None) -> list[Diagnostic]:
    """Every diagnostic in a compiler's output (only errors or only warnings when `kind` says so), in order."""
    found = [Diagnostic(m["path"], int(m["line"]), int(m["column"]) if m["column"] else None, m["kind"],
                        m["message"].strip()) for m in _DIAGNOSTIC.finditer(output)]
    return [d for d in found if kind is None or d.kind == kind]
