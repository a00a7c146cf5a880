"""The host build's cache of firmware binaries, shared by every gen process of the user: the least recently used
go beyond FIRMWARE_CACHE_ENTRIES, but never one used in the last minutes, which a caller may be about to run."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from generator.simulate.host_build import FIRMWARE_CACHE_ENTRIES, FIRMWARE_CACHE_GRACE_S, _prune_firmware_cache


def make_entries(cache, count: int, age_s: float) -> list:
    entries = []
    for index in range(count):
        entry = cache / f"firmware-{age_s:.0f}-{index:03d}"
        entry.mkdir()
        (entry / "firmware").write_bytes(b"\x7fELF")
        stamp = time.time() - age_s - index
        os.utime(entry, (stamp, stamp))
        entries.append(entry)
    return entries


def test_binaries_used_in_the_grace_period_survive_a_prune_beyond_the_entry_limit(tmp_path):
    recent = make_entries(tmp_path, FIRMWARE_CACHE_ENTRIES + 8, age_s=1)
    _prune_firmware_cache(tmp_path)
    assert all((entry / "firmware").is_file() for entry in recent)


def test_beyond_the_entry_limit_the_least_recently_used_old_binaries_go(tmp_path):
    old = make_entries(tmp_path, FIRMWARE_CACHE_ENTRIES + 5, age_s=FIRMWARE_CACHE_GRACE_S + 60)
    _prune_firmware_cache(tmp_path)
    kept = sorted(p.name for p in tmp_path.glob("firmware-*"))
    assert kept == sorted(p.name for p in old[:FIRMWARE_CACHE_ENTRIES])


def test_a_binary_another_gen_prunes_while_this_one_looks_is_skipped(tmp_path, monkeypatch):
    old = make_entries(tmp_path, FIRMWARE_CACHE_ENTRIES + 2, age_s=FIRMWARE_CACHE_GRACE_S + 60)
    is_dir = Path.is_dir

    def vanishing(path: Path) -> bool:        # the other gen removes it between the listing and its stat
        if path == old[0]:
            shutil.rmtree(path)
            return True
        return is_dir(path)

    monkeypatch.setattr(Path, "is_dir", vanishing)
    _prune_firmware_cache(tmp_path)
    monkeypatch.undo()
    kept = sorted(p.name for p in tmp_path.glob("firmware-*"))
    assert kept == sorted(p.name for p in old[1:FIRMWARE_CACHE_ENTRIES + 1])
