"""`gen --help` lists every command without importing it: each listed summary is the command's own help, cut the
way click cuts it, at every width; and `gen --help` / `gen --version` import none of the machinery."""

from __future__ import annotations

import sys

import pytest
from typer import _click as click
from typer.main import get_command

from generator.cli.commands import COMMANDS, app


def registered_commands() -> dict[str, click.Command]:
    root = get_command(app)
    context = root.make_context("gen", ["--help"], resilient_parsing=True)
    return {name: root.get_command(context, name) for name in root.list_commands(context)}


def test_every_listed_summary_is_the_commands_own_help_at_every_width():
    for name, command in registered_commands().items():
        for width in range(20, 160):
            assert (click.utils.make_default_short_help(COMMANDS[name][1], width)
                    == command.get_short_help_str(width)), (name, width)


def test_every_module_registers_the_commands_listed_for_it():
    import importlib

    import typer

    for module_name in {module for module, _ in COMMANDS.values()}:
        commands = typer.Typer()
        importlib.import_module(f"generator.cli.{module_name}").register(commands)
        group = get_command(commands)
        names = set(getattr(group, "commands", {group.name: group}))
        assert names == {name for name, (module, _) in COMMANDS.items() if module == module_name}, module_name


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_no_command_machinery(argv, monkeypatch, capsys):
    from generator.cli import main

    for name in list(sys.modules):
        if name.startswith("generator.") and name not in ("generator.cli", "generator.cli.commands",
                                                           "generator.cli.terminal", "generator.core",
                                                           "generator.core.errors"):
            monkeypatch.delitem(sys.modules, name)
    for heavy in ("rich", "yaml", "cryptography", "jinja2", "jsonschema"):
        monkeypatch.delitem(sys.modules, heavy, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    loaded = {name for name in sys.modules if name.startswith("generator.") and name.endswith("_commands")}
    assert loaded == set()
    assert not {"rich", "yaml", "cryptography", "jinja2", "jsonschema"} & set(sys.modules)
    assert capsys.readouterr().out.startswith("Usage: gen" if argv == ["--help"] else "gen ")
