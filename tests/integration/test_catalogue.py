"""The root platformio.ini is the catalogue of targets: PlatformIO's own parser accepts it, it pins versions, and
the spec rejects a target that is not in it, listing those that are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from generator.spec.catalogue import load_catalogue

ROOT = Path(__file__).parent.parent.parent
REQUIRED = {("esp32", "arduino"), ("esp32", "espidf"), ("esp32c3", "arduino"), ("esp32s3", "espidf")}


def test_platformios_own_parser_accepts_the_catalogue():
    pio = Path(sys.executable).with_name("pio")
    result = subprocess.run([str(pio), "project", "config", "-d", str(ROOT), "--json-output"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sections = dict(json.loads(result.stdout))
    assert {f"env:{name}" for name in load_catalogue()} <= set(sections)


def test_the_catalogue_covers_the_required_targets_with_pinned_versions():
    targets = load_catalogue()
    assert REQUIRED <= {(t.chip, t.framework) for t in targets.values()}
    for target in targets.values():
        assert "@" in target.platform and not any(c in target.platform for c in "^~<>*"), target.platform
        if target.framework == "arduino":
            lib_deps = target.option("lib_deps")
            assert lib_deps == "knolleary/PubSubClient@2.8"


def test_an_unknown_target_names_the_targets_there_are(tmp_path):
    spec = tmp_path / "device.yaml"
    spec.write_text("project: p\ntarget: esp8266\nwifi: {ssid: s, password: 'abcdefgh'}\n"
                    "broker: {host: mqtt.example.com}\ndevice: {id: d1}\n")
    result = subprocess.run([sys.executable, "-m", "generator", "check", str(spec)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{spec}:2:" in result.stderr
    for name in load_catalogue():
        assert name in result.stderr
