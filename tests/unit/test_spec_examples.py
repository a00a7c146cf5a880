"""The example specs are valid, their resolution is deterministic, and secrets never reach the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.cli import main
from generator.spec import load_spec

ROOT = Path(__file__).parent.parent.parent
EXAMPLES = sorted((ROOT / "projects" / "examples").glob("*/device.yaml"))


def check_output(spec: Path, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["check", str(spec)])
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_there_is_an_example_for_every_auth_mode_and_framework():
    combos = {(d.framework, d.auth) for spec in EXAMPLES for d in load_spec(spec).devices}
    assert combos >= {(fw, auth) for fw in ("arduino", "espidf") for auth in ("mtls", "password", "mtls+password")}


@pytest.mark.parametrize("spec", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_every_example_passes_gen_check_with_a_byte_identical_result(spec: Path, capsys):
    code, first, err = check_output(spec, capsys)
    assert code == 0, err
    code, second, _ = check_output(spec, capsys)
    assert first == second
    assert "{id}" not in first


def test_resolution_expands_id_and_fills_defaults():
    spec = load_spec(ROOT / "projects/examples/fleet-nvs/device.yaml")
    assert len(spec.devices) == 11
    c3 = spec.device("sensor-c3")
    assert c3.target.name == "esp32c3-arduino" and c3.chip == "esp32c3"
    assert c3.publish[0].topic == "fleet/sensor-c3/telemetry"
    assert c3.keepalive == 30 and c3.broker.port == 8883 and c3.status.online == "online"


def test_gen_new_scaffolds_a_valid_project_and_refuses_to_overwrite_it(tmp_path, capsys):
    for framework, auth in (("arduino", "mtls"), ("espidf", "mtls+password")):
        name = f"demo-{framework}"
        with pytest.raises(SystemExit) as done:
            main(["new", name, "--framework", framework, "--auth", auth, "--dir", str(tmp_path)])
        assert done.value.code == 0
        project = tmp_path / name
        assert (project / "secrets.yaml").stat().st_mode & 0o777 == 0o600
        ignored = (project / ".gitignore").read_text().split()
        assert {"secrets.yaml", "pki/private/", "build/"} <= set(ignored)
        text = (project / "device.yaml").read_text()
        assert text.startswith("# yaml-language-server: $schema=")
        spec = load_spec(project / "device.yaml")
        assert spec.devices[0].framework == framework and spec.devices[0].auth == auth
        before = (project / "device.yaml").read_bytes()
        with pytest.raises(SystemExit) as done:
            main(["new", name, "--dir", str(tmp_path)])
        assert done.value.code == 2
        assert (project / "device.yaml").read_bytes() == before
    capsys.readouterr()


@pytest.mark.parametrize("ssid", ["plain-wifi", "Café ☕ 📶", "tab\there"])
def test_the_resolved_spec_prints_the_same_with_libyamls_emitter_or_pyyamls(tmp_path, ssid):
    import yaml

    from generator.spec.view import mask_secrets, render_resolved_spec, resolved_view

    (tmp_path / "device.yaml").write_text(
        f"project: view\nwifi: {{ssid: {json.dumps(ssid, ensure_ascii=False)}, password: abcdefgh}}\nbroker: {{host: mqtt.example.com}}\n"
        "devices:\n" + "".join(f"  - id: d{n}\n" for n in range(30)))
    spec = load_spec(tmp_path / "device.yaml")
    pure = yaml.safe_dump(mask_secrets(resolved_view(spec), set()), sort_keys=False, allow_unicode=True, width=120)
    assert render_resolved_spec(spec, set()) == pure


@pytest.mark.parametrize("ssid", ["yes", "1.5", "2020-01-01", "#x", "- x", "*star", "a: b", " lead", "null", "multi\nline",
                                   "{id}", "x" * 40 + " y" * 60])
def test_the_resolved_spec_reads_back_as_the_values_it_shows_whatever_they_look_like(tmp_path, ssid):
    import yaml

    from generator.spec.view import mask_secrets, render_resolved_spec, resolved_view

    spec_text = {"project": "view", "wifi": {"ssid": ssid[:32], "password": "abcdefgh"}, "broker": {"host": "mqtt.example.com"},
                 "devices": [{"id": "d1"}], "vars": {"room": ssid}}
    (tmp_path / "device.yaml").write_text(json.dumps(spec_text))
    spec = load_spec(tmp_path / "device.yaml")
    assert yaml.safe_load(render_resolved_spec(spec, set())) == mask_secrets(resolved_view(spec), set())
