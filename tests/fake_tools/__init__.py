"""Stand-ins for `pio` and `esptool` on PATH, and an OUT/ laid out the way `gen generate` lays it out.

    bin_dir = install_fake_tools(tmp_path / "bin")          # shims that run pio.py / esptool.py with this Python
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}...")
    calls(log_path)                                         # [{"tool": "pio", "argv": [...]}, ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAKE_TOOLS_DIR = Path(__file__).resolve().parent


def install_fake_tools(bin_dir: Path, tools: tuple[str, ...] = ("pio", "esptool")) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOLS_DIR / (tool + ".py")}" "$@"\n')
        shim.chmod(0o755)
    return bin_dir


def calls(log_path: Path, tool: str | None = None) -> list[dict]:
    if not log_path.exists():
        return []
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [e for e in entries if tool is None or e["tool"] == tool]
