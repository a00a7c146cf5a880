"""gen generate clears what gen simulate kept of a device that left the spec or got a new key from gen (issue 23:
caches): its simulated flash, and its host build (which holds its private key with `secrets: embed`) unless a device
of the spec still uses it, without waiting for the next gen simulate of the spec."""

from __future__ import annotations

import json

import pytest

from fake_tools.out_layout import copy_example
from generator.cli import main
from generator.simulate.departed import host_key_digests
from generator.simulate.device_runs import default_flash_root, default_host_build_cache
from generator.simulate.private_cache import KEY_RECORD, OWNERS_FILE
from generator.spec import load_spec


def run_gen(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    assert done.value.code == 0, captured.out + captured.err
    return captured.out


def simulated_before(spec_path, builds: dict[str, str]):
    """The cache and simulated flash as `gen simulate` leaves them: `builds` maps each device to its build's entry."""
    spec = load_spec(spec_path)
    cache = default_host_build_cache()
    cache.mkdir(parents=True)
    for entry in set(builds.values()):
        (cache / entry).mkdir()
        (cache / entry / "firmware").write_bytes(b"an executable with the key compiled in")
    owners = {f"{spec.path.resolve()}\n{device_id}": entry for device_id, entry in builds.items()}
    (cache / OWNERS_FILE).write_text(json.dumps(owners))
    flash_root = default_flash_root(spec)
    for device_id, key in host_key_digests(spec).items():
        (flash_root / device_id).mkdir(parents=True)
        (flash_root / device_id / KEY_RECORD).write_text(f"{key}\n")
    return cache, flash_root


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))


def test_a_device_removed_from_the_spec_loses_its_simulated_flash_at_the_next_generate(tmp_path, capsys):
    spec_path = copy_example("fleet-nvs", tmp_path / "fleet")
    run_gen(capsys, "generate", str(spec_path))
    ids = [device.id for device in load_spec(spec_path).devices]
    cache, flash_root = simulated_before(spec_path, dict.fromkeys(ids, "firmware-shared"))
    spec_path.write_text(spec_path.read_text().replace("  - id: sensor-10\n", ""))
    said = run_gen(capsys, "generate", str(spec_path))
    assert "erased what gen simulate kept of sensor-10" in said
    assert not (flash_root / "sensor-10").exists() and (flash_root / "sensor-09").is_dir()
    assert (cache / "firmware-shared").is_dir()          # the other devices still run this image
    assert not any(owner.endswith("\nsensor-10") for owner in json.loads((cache / OWNERS_FILE).read_text()))


def test_a_device_given_a_new_key_loses_the_build_that_holds_its_old_key_at_the_next_generate(tmp_path, capsys):
    spec_path = copy_example("arduino-mtls", tmp_path / "desk")
    run_gen(capsys, "generate", str(spec_path))
    device_id = load_spec(spec_path).devices[0].id
    cache, flash_root = simulated_before(spec_path, {device_id: "firmware-own"})
    run_gen(capsys, "pki", "renew", str(spec_path), device_id, "--new-key")
    said = run_gen(capsys, "generate", str(spec_path))
    assert f"erased what gen simulate kept of {device_id}" in said
    assert not (cache / "firmware-own").exists() and not (flash_root / device_id).exists()


def test_an_unchanged_spec_keeps_what_gen_simulate_made(tmp_path, capsys):
    spec_path = copy_example("arduino-mtls", tmp_path / "desk")
    run_gen(capsys, "generate", str(spec_path))
    device_id = load_spec(spec_path).devices[0].id
    cache, flash_root = simulated_before(spec_path, {device_id: "firmware-own"})
    (spec_path.parent / "build" / ".generate-stamp.json").unlink()      # the full way, not the stamp's shortcut
    said = run_gen(capsys, "generate", str(spec_path))
    assert "erased" not in said
    assert (cache / "firmware-own").is_dir() and (flash_root / device_id / KEY_RECORD).is_file()
