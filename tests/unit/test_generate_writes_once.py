"""`gen generate` renders everything first and writes once: a failure while rendering leaves OUT and the user's
app sources as they were."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator.core.errors import UserError
from generator.core.paths import PROJECT_ROOT
from generator.output import generate as generate_module
from generator.output.generate import generate
from generator.spec import load_spec


def copy_example(name: str, tmp_path: Path) -> Path:
    project = tmp_path / name
    shutil.copytree(PROJECT_ROOT / "projects" / "examples" / name, project, ignore=shutil.ignore_patterns("pki", "build", "src"))
    return project / "device.yaml"


def test_a_device_that_fails_to_render_leaves_no_file_written_and_no_app_source_created(tmp_path, monkeypatch):
    spec = load_spec(copy_example("fleet-nvs", tmp_path))
    real_render = generate_module.render_device_files
    last = spec.devices[-1].id

    def failing_render(device, *args, **kwargs):
        if device.id == last:
            raise UserError(f"cannot render {device.id}")
        return real_render(device, *args, **kwargs)

    monkeypatch.setattr(generate_module, "render_device_files", failing_render)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=f"cannot render {last}"):
        generate(spec, out)
    assert not out.exists()
    assert not (spec.directory / "src").exists()


def test_a_second_run_with_nothing_changed_changes_no_file(tmp_path):
    spec = load_spec(copy_example("arduino-mtls", tmp_path))
    first = generate(spec, tmp_path / "out")
    again = generate(spec, tmp_path / "out")
    assert first.changed and again.changed == ()
    assert again.notes == () and again.removed == ()
