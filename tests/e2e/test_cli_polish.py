"""The small things a new user trips over (issue 26, item 10): a busy port is the user's to fix (exit 2) and says
who holds it; fix lines name the real spec path and device; one metavar style; tables without trailing spaces;
mosquitto's times readable; secrets.yaml given as the spec says each problem once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import EXAMPLES_DIR
from generator.firmware_build.flashing import check_port_free
from generator.cli import main
from generator.core.errors import UserError


def run_gen(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


@pytest.fixture
def held_port():
    """A serial-like port (a pseudo-terminal) another process holds open and locked, as a monitor does."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys, time\n"
                               f"fd = os.open({name!r}, os.O_RDWR | os.O_NOCTTY)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        yield name, holder.pid
    finally:
        holder.kill()
        holder.wait()
        os.close(master)
        os.close(slave)


def test_a_busy_port_is_a_user_error_naming_the_port_and_the_process_that_holds_it(held_port):
    port, pid = held_port
    with pytest.raises(UserError) as refused:
        check_port_free(port)
    assert refused.value.exit_code == 2
    assert port in refused.value.message and f"(pid {pid})" in refused.value.message


def test_a_fix_line_names_the_spec_path_and_device_the_user_typed(capsys, tmp_path):
    project = tmp_path / "greenhouse"
    shutil.copytree(EXAMPLES_DIR / "arduino-mtls", project, ignore=shutil.ignore_patterns("pki", "build"))
    spec = str(project / "device.yaml")
    assert run_gen(capsys, "generate", spec)[0] == 0
    code, output = run_gen(capsys, "flash", spec, "--device", "greenhouse-01", "--port", os.devnull)
    assert code == 2
    assert f"gen build {spec} --device greenhouse-01" in output
    assert "SPEC" not in output and " ID" not in output


def every_option():
    import typer.main
    from generator.cli import app

    group = typer.main.get_command(app)

    def walk(command, path):
        for param in command.params:
            yield path, param
        # list_commands/get_command: gen's top level imports a command's module only when asked for it
        for name in command.list_commands(None) if hasattr(command, "list_commands") else ():
            yield from walk(command.get_command(None, name), path + (name,))

    yield from walk(group, ())


def test_every_option_that_takes_a_value_names_it_in_one_style_never_a_type_name():
    import click

    type_names = {"TEXT", "PATH", "INTEGER", "FLOAT", "FILENAME", "FILE PATH", "DIRECTORY"}
    odd = []
    for path, param in every_option():
        if param.param_type_name != "option" or param.is_flag or param.count or not param.opts[0].startswith("--"):
            continue
        if param.opts[0] in ("--install-completion", "--show-completion"):
            continue
        metavar = param.metavar
        if not metavar or metavar in type_names or metavar != metavar.upper() or metavar.startswith("["):
            odd.append(f"gen {' '.join(path)} {param.opts[0]}: {metavar!r}")
    assert not odd, "\n".join(odd)


def test_pki_list_prints_its_table_without_trailing_spaces(capsys, tmp_path):
    project = tmp_path / "greenhouse"
    shutil.copytree(EXAMPLES_DIR / "arduino-mtls", project, ignore=shutil.ignore_patterns("pki", "build"))
    assert run_gen(capsys, "generate", str(project / "device.yaml"))[0] == 0
    code, output = run_gen(capsys, "pki", "list", str(project / "device.yaml"))
    assert code == 0 and "greenhouse-01" in output
    assert [line for line in output.splitlines() if line != line.rstrip()] == []


def test_a_secrets_file_passed_as_the_spec_lists_each_problem_once_and_points_at_the_spec(capsys, tmp_path):
    project = tmp_path / "greenhouse"
    shutil.copytree(EXAMPLES_DIR / "arduino-mtls", project, ignore=shutil.ignore_patterns("pki", "build"))
    code, output = run_gen(capsys, "check", str(project / "secrets.yaml"))
    assert code == 2
    problems = [line for line in output.splitlines() if line.startswith(str(project / "secrets.yaml") + ":")]
    assert problems and len(problems) == len(set(problems)), problems
    assert "pass the spec" in output
