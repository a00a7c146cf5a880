"""GCC's diagnostics (`file:line[:column]: [fatal ]error|warning: message`), as the host build and PlatformIO's
log print them: the one place their form is spelled."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
        return f"{path or self.path}:{self.line}" + (f":{self.column}" if self.column else "")


def diagnostics(output: str, kind: str | None = None) -> list[Diagnostic]:
    """Every diagnostic in a compiler's output (only errors or only warnings when `kind` says so), in order."""
    found = [Diagnostic(m["path"], int(m["line"]), int(m["column"]) if m["column"] else None, m["kind"],
                        m["message"].strip()) for m in _DIAGNOSTIC.finditer(output)]
    return [d for d in found if kind is None or d.kind == kind]
