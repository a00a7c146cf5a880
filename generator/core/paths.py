"""Where the files shipped with the tool live: the templates, the spec's JSON Schema and the target catalogue
(platformio.ini). In a checkout they are the top-level folders (the product card fixes the top level); an installed
wheel carries them as package data in generator/shipped/ (setup.py's build step copies them there), found through
importlib.resources, so an installed `gen` works in any folder. And where a project's own output goes by default."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]    # generator/
PROJECT_ROOT = PACKAGE_DIR.parent                    # the checkout, when gen runs from one
SHIPPED = ("templates", "schema", "platformio.ini")  # what the wheel carries, under generator/shipped/
OUT_DIR_NAME = "build"            # a project's OUT, next to its spec (unless --out says where)


def _shipped_root() -> Path:
    packaged = files("generator").joinpath("shipped")
    return Path(str(packaged)) if packaged.is_dir() else PROJECT_ROOT


SHIPPED_ROOT = _shipped_root()
TEMPLATES_DIR = SHIPPED_ROOT / "templates"
SCHEMA_PATH = SHIPPED_ROOT / "schema" / "device.schema.json"
CATALOGUE_PATH = SHIPPED_ROOT / "platformio.ini"
HOST_RUNTIME_DIR = TEMPLATES_DIR / "host"
LINK_LIBRARY_DIR = TEMPLATES_DIR / "gen_link"         # gen's device runtime: plain C/C++, copied into projects
