"""What gen simulate keeps outside OUT, as pure file operations (fast): builds recorded per spec and device and
deleted once no device uses them, and each simulated device's flash private and erased when the device leaves the
spec or its gen-made key changes. tests/test_simulate_cache_builds.py shows it with real host builds."""

from __future__ import annotations

import stat

from generator.simulate.private_cache import KEY_RECORD, forget_departed_builds, prepare_flash, purge_flash


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def build(cache, name: str):
    folder = cache / name
    folder.mkdir(parents=True)
    (folder / "firmware").write_bytes(b"\x7fELF with a device key inside")
    return folder / "firmware"


def test_the_build_of_a_device_that_left_the_spec_is_deleted(tmp_path):
    spec = tmp_path / "device.yaml"
    a, b = build(tmp_path, "firmware-aaa"), build(tmp_path, "firmware-bbb")
    forget_departed_builds(tmp_path, spec, {"dev-a": a, "dev-b": b}, ["dev-a", "dev-b"])
    assert forget_departed_builds(tmp_path, spec, {"dev-b": b}, ["dev-b"]) == ["firmware-aaa"]
    assert not a.parent.exists() and b.exists()


def test_the_old_build_of_a_device_whose_key_changed_is_deleted(tmp_path):
    spec = tmp_path / "device.yaml"
    old, new = build(tmp_path, "firmware-old"), build(tmp_path, "firmware-new")
    forget_departed_builds(tmp_path, spec, {"dev-a": old}, ["dev-a"])
    assert forget_departed_builds(tmp_path, spec, {"dev-a": new}, ["dev-a"]) == ["firmware-old"]
    assert not old.exists() and new.exists()


def test_a_build_another_spec_still_uses_is_kept(tmp_path):
    shared = build(tmp_path, "firmware-shared")
    forget_departed_builds(tmp_path, tmp_path / "one.yaml", {"dev-a": shared}, ["dev-a"])
    forget_departed_builds(tmp_path, tmp_path / "two.yaml", {"dev-a": shared}, ["dev-a"])
    assert forget_departed_builds(tmp_path, tmp_path / "one.yaml", {}, []) == []
    assert shared.exists()
    assert mode(tmp_path / "owners.json") == 0o600


def test_the_simulated_flash_is_private_and_erased_when_its_device_leaves_or_gets_a_new_key(tmp_path):
    root = tmp_path / "sim-flash" / "project"
    prepare_flash(root, {"dev-a": "key-1", "dev-b": "key-2", "dev-own": None})
    for device_id in ("dev-a", "dev-b", "dev-own"):
        (root / device_id / "nvs.journal").write_bytes(b"a key the device wrote")
    assert {mode(root), mode(root.parent), mode(root / "dev-a")} == {0o700}
    assert (root / "dev-a" / KEY_RECORD).read_text().strip() == "key-1"
    wiped = purge_flash(root, {"dev-a": "key-1b", "dev-own": None}, ["dev-own"])   # dev-b left, dev-a re-keyed
    assert sorted(wiped) == ["dev-a", "dev-b"]
    assert (root / "dev-own" / "nvs.journal").exists()             # a device-born key is never wiped here


def test_an_older_flash_folder_made_world_readable_is_closed(tmp_path):
    root = tmp_path / "flash"
    (root / "dev-a").mkdir(parents=True, mode=0o755)
    root.chmod(0o755)
    (root / "dev-a").chmod(0o755)
    purge_flash(root, {"dev-a": None}, [])
    assert mode(root) == 0o700 and mode(root / "dev-a") == 0o700
