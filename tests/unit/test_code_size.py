"""No module of generator/ over 500 lines, no function over about 80 and no line over 120 characters: a reader takes
in one piece at a time."""

from __future__ import annotations

import ast
from pathlib import Path

import generator

PACKAGE_DIR = Path(generator.__file__).parent
MODULE_LINES_MAX = 500
FUNCTION_LINES_MAX = 85
LINE_LENGTH_MAX = 120   # pyproject.toml's [tool.ruff] line-length


def test_no_module_is_longer_than_500_lines():
    long = {path.relative_to(PACKAGE_DIR).as_posix(): n for path in PACKAGE_DIR.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_LINES_MAX}
    assert long == {}


def test_no_function_is_longer_than_about_80_lines():
    long = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = path.relative_to(PACKAGE_DIR).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1   # type: ignore[operator]
                if lines > FUNCTION_LINES_MAX:
                    long.append(f"{module}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_no_line_of_generator_is_longer_than_the_configured_120_characters():
    long = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = path.relative_to(PACKAGE_DIR).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if len(line) > LINE_LENGTH_MAX:
                long.append(f"{module}:{number} ({len(line)} characters)")
    assert long == [], "\n".join(long)
