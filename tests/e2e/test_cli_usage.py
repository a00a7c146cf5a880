"""The command line as a user meets it: every usage mistake exits 2 with click's usage line and one error, never a
Python traceback; --version, --help on every command and shell completion work as typer users expect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "projects/examples/arduino-mtls"


def gen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real program (`python -m generator`), as a shell would run it."""
    return subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "COLUMNS": "120"})


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of an example with its PKI, so that `gen pki show` has something to show."""
    directory = tmp_path_factory.mktemp("cli") / "project"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("pki", "build"))
    assert gen("pki", "issue", str(directory / "device.yaml")).returncode == 0
    return directory / "device.yaml"


USAGE_MISTAKES = {
    "unknown command": (["nosuchcmd"], "No such command 'nosuchcmd'"),
    "unknown option": (["check", "--colour"], "No such option: --colour"),
    "missing spec": (["check"], "Missing argument 'SPEC'"),
    "duration not a number": (["simulate", "{spec}", "--duration", "abc"], "Invalid value for '--duration'"),
    "port out of range": (["broker", "up", "{spec}", "--port", "80000"], "Invalid value for '--port'"),
    "negative jobs": (["build", "{spec}", "--jobs", "0"], "--jobs"),
    "unknown pki subcommand": (["pki", "frobnicate", "{spec}"], "No such command 'frobnicate'"),
}


@pytest.mark.parametrize("case", USAGE_MISTAKES, ids=list(USAGE_MISTAKES))
def test_a_usage_mistake_exits_2_with_one_message_and_no_traceback(case, project):
    args, message = USAGE_MISTAKES[case]
    result = gen(*[arg.replace("{spec}", str(project)) for arg in args])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert message in result.stderr


def test_gen_version_prints_the_installed_version():
    from importlib.metadata import version

    result = gen("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gen {version('esp32-mqtt-gen')}"


def test_every_command_has_help(project):
    from typer.main import get_command

    from generator.cli.commands import app

    root = get_command(app)
    context = root.make_context("gen", ["--help"], resilient_parsing=True)
    commands = [[name] for name in root.list_commands(context)]
    for name in root.list_commands(context):
        commands += [[name, sub] for sub in getattr(root.get_command(context, name), "commands", {})]
    for command in commands:
        result = gen(*command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith("Usage: gen " + " ".join(command)), command


def test_shell_completion_is_offered():
    result = gen("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "gen" in result.stdout


@pytest.mark.parametrize("name", ["root-ca", "issuing-ca", "broker", "greenhouse-01", "backend"])
def test_gen_pki_show_explains_every_name_gen_pki_list_prints(name, project):
    listed = gen("pki", "list", str(project))
    assert name in listed.stdout
    result = gen("pki", "show", str(project), name)
    assert result.returncode == 0, result.stderr
    assert "cert file" in result.stdout


@pytest.mark.parametrize("topic", ["dev/[/]/#/x", "dev/[b]x/#/y", "dev/[bold red]x[/]/#/z"])  # '#' not last: invalid
def test_a_spec_value_in_an_error_is_shown_as_written_not_read_as_markup(topic, tmp_path):
    spec = tmp_path / "device.yaml"
    text = (EXAMPLE / "device.yaml").read_text()
    spec.write_text(text.replace("devices/{id}/cmd/#", topic) if "devices/{id}/cmd/#" in text else text)
    shutil.copy(EXAMPLE / "secrets.yaml", tmp_path / "secrets.yaml")
    assert topic in spec.read_text(), "the example's command filter changed; update this test"
    result = gen("check", str(spec))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert topic in result.stderr
