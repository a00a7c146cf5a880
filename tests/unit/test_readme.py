"""The README is the user's entry point: its spec reference matches the schema, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from generator.spec.reference import readme_with_reference

ROOT = Path(__file__).parent.parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_spec_reference_in_the_readme_is_in_step_with_the_schema():
    assert readme_with_reference(README) == README, "run: python -m generator.spec.reference --update"


def test_every_key_of_the_schema_is_documented_in_the_readme():
    import json

    schema = json.loads((ROOT / "schema/device.schema.json").read_text())
    for key in schema["properties"]:
        assert f"| `{key}` |" in README


def test_the_readme_names_the_setup_and_test_commands_that_ci_runs():
    assert "./scripts/demo" in README and "./scripts/test" in README
    ci = (ROOT / ".ci/run").read_text()
    assert "./scripts/test" in ci
    for script in ("scripts/demo", "scripts/test", "scripts/setup"):
        path = ROOT / script
        assert path.exists() and path.stat().st_mode & 0o111, script


def test_every_gen_command_in_the_readme_table_is_registered():
    from generator.cli.commands import COMMANDS

    registered = set(COMMANDS)
    documented = set(re.findall(r"^\| `gen ([a-z]+)", README, flags=re.M))
    assert documented, "no commands found in the README table"
    missing = documented - registered
    assert not missing, f"documented but not registered: {sorted(missing)}"
