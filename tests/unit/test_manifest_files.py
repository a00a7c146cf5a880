"""OUT/manifest.json names only files OUT holds, and says where each device's key is made (issue 26, item 11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import EXAMPLES_DIR
from generator.output.generate import generate
from generator.spec import load_spec


def generated(tmp_path: Path, example: str) -> tuple[Path, dict]:
    directory = tmp_path / example
    shutil.copytree(EXAMPLES_DIR / example, directory, ignore=shutil.ignore_patterns("pki", "build"))
    out = directory / "build"
    generate(load_spec(directory / "device.yaml"), out)
    return out, json.loads((out / "manifest.json").read_text())


def listed_files(entry: dict) -> list[str]:
    return [entry[key] for key in ("ca", "client_cert", "client_key", "nvs") if entry.get(key)]


def test_a_device_that_makes_its_own_key_lists_no_key_or_certificate_file_and_says_key_origin_device(tmp_path):
    out, manifest = generated(tmp_path, "arduino-device-key")
    entry = manifest["devices"][0]
    assert entry["key_origin"] == "device"
    assert entry["client_key"] is None and entry["client_cert"] is None
    assert all((out / path).is_file() for path in listed_files(entry)), listed_files(entry)


def test_a_device_whose_key_gen_makes_lists_its_existing_key_and_certificate_and_says_key_origin_host(tmp_path):
    out, manifest = generated(tmp_path, "arduino-mtls")
    entry = manifest["devices"][0]
    assert entry["key_origin"] == "host"
    assert entry["client_key"] and entry["client_cert"]
    assert all((out / path).is_file() for path in listed_files(entry))
