"""The packages of generator/ import only downward, and no two of them import each other: each layer can be read
and tested with only the layers below it (README, "How the code is laid out")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import generator

PACKAGE_DIR = Path(generator.__file__).parent
LAYERS = (
    ("core",),
    ("spec",),
    ("pki",),
    ("broker", "firmware", "ci"),
    ("output",),
    ("firmware_build", "simulate", "doctor", "provision", "ota", "logs"),
    ("cli",),
)
LAYER_OF = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def imported_packages(path: Path) -> set[str]:
    """The generator packages a module imports, wherever the import sits (module level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "generator" and len(parts) > 1 and parts[1] in LAYER_OF:
                found.add(parts[1])
    return found


def package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the modules of the package that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR)
        if len(relative.parts) < 2:
            continue
        package = relative.parts[0]
        for imported in imported_packages(path) - {package}:
            graph.setdefault(package, {}).setdefault(imported, set()).add(relative.as_posix())
    return graph


def test_every_package_of_generator_has_a_layer() -> None:
    packages = {path.parent.name for path in PACKAGE_DIR.glob("*/__init__.py")}
    assert packages == set(LAYER_OF), "add the new package to LAYERS (and to README's layer picture)"


def test_no_package_imports_a_package_of_a_higher_or_the_same_layer_except_runners() -> None:
    upward = []
    for package, imports in package_imports().items():
        for imported, modules in imports.items():
            same_runner_layer = LAYER_OF[package] == LAYER_OF[imported] == LAYER_OF["simulate"]
            if LAYER_OF[imported] > LAYER_OF[package] or (LAYER_OF[imported] == LAYER_OF[package]
                                                          and not same_runner_layer):
                upward.append(f"{package} -> {imported} ({', '.join(sorted(modules))})")
    assert upward == []


def test_no_packages_import_each_other_even_through_others() -> None:
    graph = {package: set(imports) for package, imports in package_imports().items()}
    cycles = []

    def visit(package: str, path: tuple[str, ...]) -> None:
        for imported in sorted(graph.get(package, ())):
            if imported == path[0]:
                cycles.append(" -> ".join(path + (imported,)))
            elif imported not in path:
                visit(imported, path + (imported,))

    for start in sorted(graph):
        visit(start, (start,))
    assert cycles == []


@pytest.mark.parametrize("source, expected", [
    ("from generator.spec.model import Spec\n", {"spec"}),
    ("def f():\n    from generator.cli import main\n", {"cli"}),
    ("import generator.pki.layout\n", {"pki"}),
    ("from generator import output\n", {"output"}),
])
def test_the_checker_sees_every_form_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    module = tmp_path / "module.py"
    module.write_text(source)
    assert imported_packages(module) == expected
