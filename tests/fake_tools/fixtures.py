"""pytest fixtures for the build tests: the stand-in tools on PATH, and example OUT/ trees laid out by hand."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from fake_tools import calls, install_fake_tools


@dataclass
class FakeTools:
    bin_dir: Path
    log: Path
    core_dir: Path

    def calls(self, tool: str | None = None) -> list[dict]:
        return calls(self.log, tool)

    def pio_runs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls("pio") if c["argv"][:1] == ["run"]]


@pytest.fixture
def fake_tools(tmp_path, monkeypatch) -> FakeTools:
    """Stand-in `pio` and `esptool` first on PATH, recording every call; PlatformIO's core dir in tmp_path."""
    tools = FakeTools(install_fake_tools(tmp_path / "fake-bin"), tmp_path / "tool-calls.jsonl", tmp_path / "pio-core")
    monkeypatch.setenv("PATH", f"{tools.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(tools.log))
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(tools.core_dir))
    monkeypatch.delenv("FAKE_PIO_FAIL", raising=False)
    monkeypatch.delenv("FAKE_ESPTOOL_FAIL", raising=False)
    return tools


@pytest.fixture
def no_installed_tools(tmp_path, monkeypatch) -> None:
    """Neither PATH nor gen's own install directory holds pio or esptool."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr("generator.core.external_tools._install_bin_dir", lambda: empty)


@pytest.fixture
def gen_cli(capsys):
    """`gen_cli("build", spec)` runs the real `gen` entry point in-process: (exit code, stdout, stderr)."""
    from generator.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return exited.value.code, captured.out, captured.err

    return run
