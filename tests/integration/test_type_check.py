"""The type checker finds nothing in generator/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def test_mypy_finds_no_error_in_the_generator():
    result = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "generator"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
