"""Where the files shipped with the tool live (templates, schema, the target catalogue)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]   # generator/core/paths.py -> the checkout
TEMPLATES_DIR = PROJECT_ROOT / "templates"
SCHEMA_PATH = PROJECT_ROOT / "schema" / "device.schema.json"
CATALOGUE_PATH = PROJECT_ROOT / "platformio.ini"
HOST_RUNTIME_DIR = TEMPLATES_DIR / "host"
LINK_LIBRARY_DIR = TEMPLATES_DIR / "gen_link"         # gen's device runtime: plain C/C++, copied into projects
