"""`gen new` and `gen check`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from generator.cli.terminal import SPEC_ARGUMENT, console
from generator.spec import load_spec_source
from generator.spec.placeholders import check_no_placeholders
from generator.spec.source import SECRETS_FILE
from generator.spec.view import render_resolved_spec


def new(
    name: str = typer.Argument(..., help="Project name (letters, digits, '-', '_')."),
    framework: str = typer.Option("arduino", "--framework", metavar="FRAMEWORK",
                                  help="arduino (PubSubClient) or espidf (esp-mqtt)."),
    auth: str = typer.Option("mtls", "--auth", metavar="AUTH", help="mtls, password or mtls+password."),
    directory: Path = typer.Option(Path("projects"), "--dir", metavar="DIR",
                                   help="Where the project directory is created."),
) -> None:
    """Scaffold projects/NAME/ with a commented device.yaml, a secrets.yaml template and a .gitignore."""
    from generator.spec.scaffold import create_project     # its templates (jinja2): only for `gen new`
    project_dir = create_project(name, framework=framework, auth=auth, parent=directory)
    console.print(f"created {project_dir}/")
    for relative in ("device.yaml", "secrets.yaml", ".gitignore"):
        console.print(f"  {relative}")
    console.print(f"next: put your WiFi in {project_dir / 'secrets.yaml'}, "
                  f"then `gen check {project_dir / 'device.yaml'}`")


def check(spec: Path = SPEC_ARGUMENT) -> None:
    """Validate a spec and print it resolved: defaults filled, {id} expanded, secrets masked."""
    resolved, source = load_spec_source(spec)
    check_no_placeholders(resolved, Path(spec).parent / SECRETS_FILE)
    console.print(f"# {spec}: valid ({len(resolved.devices)} device{'s' if len(resolved.devices) != 1 else ''})")
    # YAML's own text, written as it is (rich would print the same bytes, after re-wrapping every line of it).
    sys.stdout.write(render_resolved_spec(resolved, source.secret_values))


def register(app: typer.Typer) -> None:
    app.command()(new)
    app.command()(check)
