"""`pip install` of gen's wheel gives a `gen` that works in any folder: the templates, the spec schema and the
target catalogue travel inside it (generator/shipped/, read through importlib.resources), not from a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from generator.core.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


def run(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def installed_gen(tmp_path_factory) -> Path:
    """A fresh virtual environment with only the wheel installed from the package (its dependencies are borrowed
    from this test's environment, which is the same set pyproject.toml names), built from a copy of the checkout's
    tracked files."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=PROJECT_ROOT)
    tracked = listed.stdout.split("\0")
    if not any(tracked):
        pytest.skip("not a git checkout: the wheel is built from the tracked files")
    for name in filter(None, tracked):
        if (PROJECT_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, source / name)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", source, cwd=work)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((work / "dist").glob("*.whl"))
    environment = work / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    purelib = Path(run(environment / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=work).stdout.strip())
    (purelib / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", environment / "bin" / "python", "install", "--no-deps",
                    "-q", wheel, cwd=work)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return environment / "bin" / "gen"


def test_the_installed_gen_makes_checks_and_generates_a_project_outside_the_checkout(installed_gen, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    created = run(installed_gen, "new", "desk", "--dir", tmp_path, cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    spec = tmp_path / "desk" / "device.yaml"
    (tmp_path / "desk" / "secrets.yaml").write_text("wifi_ssid: desk-wifi\nwifi_password: desk-passphrase\n")
    checked = run(installed_gen, "check", spec, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    generated = run(installed_gen, "generate", spec, cwd=tmp_path, env=env)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    out = tmp_path / "desk" / "build"
    assert (out / "broker" / "mosquitto.conf").is_file()
    assert (out / "manifest.json").is_file()
    where = run(installed_gen.parent / "python", "-c", "import generator.core.paths as p; print(p.SHIPPED_ROOT)",
                cwd=tmp_path, env=env)
    assert "site-packages" in where.stdout and str(PROJECT_ROOT) not in where.stdout, where.stdout
