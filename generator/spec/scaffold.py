"""`gen new`: a new project directory with a commented device.yaml, a secrets.yaml template and a .gitignore."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from generator.core.errors import UserError
from generator.core.paths import SCHEMA_PATH
from generator.core.rendering import render_template
from generator.spec.catalogue import load_catalogue
from generator.spec.contract import AUTH_MODES
from generator.spec.placeholders import PLACEHOLDER_PASSWORD, PLACEHOLDER_SSID

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def default_target(framework: str) -> str:
    for target in load_catalogue().values():
        if target.framework == framework and target.chip == "esp32":
            return target.name
    raise UserError(f"no esp32 target with framework {framework!r} in the catalogue")


def render_new_project(name: str, *, framework: str, auth: str, project_dir: Path) -> dict[str, bytes]:
    inside_tool = project_dir.resolve().is_relative_to(SCHEMA_PATH.parent.parent)
    schema_url = os.path.relpath(SCHEMA_PATH, project_dir.resolve()) if inside_tool else SCHEMA_PATH.as_uri()
    device_id = f"{name[:20].lower().replace('_', '-')}-01"
    values = dict(name=name, framework=framework, target=default_target(framework), auth=auth,
                  device_id=device_id, schema_url=schema_url, placeholder_ssid=PLACEHOLDER_SSID,
                  placeholder_password=PLACEHOLDER_PASSWORD)
    return {
        "device.yaml": render_template("new/device.yaml.j2", **values).encode(),
        "secrets.yaml": render_template("new/secrets.yaml.j2", **values).encode(),
        ".gitignore": render_template("new/gitignore.j2", **values).encode(),
    }


def create_project(name: str, *, framework: str, auth: str, parent: Path) -> Path:
    if not PROJECT_NAME.match(name):
        raise UserError(f"project name {name!r} is not usable", hint="use letters, digits, '-' and '_'")
    if framework not in ("arduino", "espidf"):
        raise UserError(f"--framework {framework!r} is not arduino or espidf")
    if auth not in AUTH_MODES:
        raise UserError(f"--auth {auth!r} is not one of {', '.join(AUTH_MODES)}")
    project_dir = Path(parent) / name
    if project_dir.exists():
        raise UserError(f"{project_dir} already exists; gen new never overwrites a project",
                        hint="choose another NAME or --dir, or edit the existing device.yaml")
    files = render_new_project(name, framework=framework, auth=auth, project_dir=project_dir)
    project_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=project_dir.parent, prefix=f".{name}.new."))
    try:
        for relative, content in files.items():
            (staging / relative).write_bytes(content)
        os.chmod(staging / "secrets.yaml", 0o600)
        os.chmod(staging, 0o755)
        os.rename(staging, project_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return project_dir
