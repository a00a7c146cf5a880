"""gen's build backend: setuptools' own (every PEP 517 hook is setuptools.build_meta's), plus one step. The wheel
carries the templates, the spec schema and the target catalogue as package data: its build copies the top-level
templates/, schema/ and platformio.ini (where the product card keeps them) into generator/shipped/, where
generator.core.paths finds them through importlib.resources. pyproject.toml names this module ([build-system]) and
its build step ([tool.setuptools.cmdclass])."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.build_meta import *  # noqa: F401,F403  (the PEP 517 hooks)
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("templates", "schema", "platformio.ini")     # generator.core.paths.SHIPPED


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):     # an editable install reads them from the checkout
            return
        target = Path(self.build_lib) / "generator" / "shipped"
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pio"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
