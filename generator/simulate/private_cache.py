"""What gen simulate keeps outside OUT between runs, kept private and no longer than its device: host builds in the
user's cache (a `secrets: embed` build holds the device's private key) and each simulated device's flash (what it
wrote to NVS: a key it made, its certificates).

- Folders 0700, files 0600 (executables 0700), whatever the umask; an older cache made 0755 is tightened on use.
- `forget_departed_builds`: the cache records which spec's device each build is for (owners.json); a build no
  device points at any more (its device left the spec, or its key changed and it was built again) is deleted.
- `purge_flash`: a simulated device's flash goes when the device leaves the spec, and when the key gen made for it
  changed (`gen pki renew --new-key`: the board is flashed anew). A device that makes its own key keeps its flash:
  that key lives there, and a rotation changes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Mapping

from generator.core.files import PRIVATE_DIR_MODE, SECRET_MODE, ensure_dir, write_atomic
from generator.core.locks import exclusive_lock

OWNERS_FILE = "owners.json"
KEY_RECORD = ".gen-key-sha256"


def forget_departed_builds(cache_dir: Path, spec_path: Path, built: Mapping[str, Path],
                           device_ids: Iterable[str]) -> list[str]:
    """Records that each device of `built` (id -> executable in cache_dir/<entry>/) now uses that build, forgets
    the spec's devices not in `device_ids`, and deletes every build no device uses any more. Returns those."""
    cache_dir = Path(cache_dir)
    keep = set(device_ids)
    prefix = f"{Path(spec_path).resolve()}\n"
    with exclusive_lock(cache_dir / "owners.lock"):
        path = cache_dir / OWNERS_FILE
        try:
            owners: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            owners = {}
        before = set(owners.values())
        for device_id, executable in built.items():
            owners[prefix + device_id] = executable.parent.name
        for owner in [o for o in owners if o.startswith(prefix) and o[len(prefix):] not in keep]:
            del owners[owner]
        stale = sorted(before - set(owners.values()))
        for entry in stale:
            if entry.startswith("firmware-") and "/" not in entry:
                shutil.rmtree(cache_dir / entry, ignore_errors=True)
                (cache_dir / f"{entry}.lock").unlink(missing_ok=True)
        write_atomic(path, json.dumps(owners, indent=1, sort_keys=True).encode(), mode=SECRET_MODE)
    return stale


def purge_flash(flash_root: Path, host_keys: Mapping[str, str | None], own_key_ids: Iterable[str]) -> list[str]:
    """flash_root/<id>/ of every device: kept private; deleted for an id no longer in the spec, or whose
    gen-made key (SHA-256 in `host_keys`) is not the one it was flashed with. `own_key_ids`: devices that make
    their own key (never wiped for a key change). Returns the ids wiped."""
    flash_root = Path(flash_root)
    if not flash_root.is_dir():
        return []
    ensure_dir(flash_root, PRIVATE_DIR_MODE)
    devices = set(host_keys) | set(own_key_ids)
    wiped = []
    for folder in sorted(p for p in flash_root.iterdir() if p.is_dir()):
        key = host_keys.get(folder.name)
        recorded = folder / KEY_RECORD
        seen = recorded.read_text().strip() if recorded.is_file() else None
        if folder.name not in devices or (key is not None and seen is not None and seen != key):
            shutil.rmtree(folder, ignore_errors=True)
            wiped.append(folder.name)
            continue
        ensure_dir(folder, PRIVATE_DIR_MODE)
        if key is not None and seen is None:
            write_atomic(recorded, key.encode() + b"\n", mode=SECRET_MODE)
    return wiped


def prepare_flash(flash_root: Path, host_keys: Mapping[str, str | None]) -> None:
    """Each device's flash folder exists, 0700, with the key it is flashed with recorded."""
    ensure_dir(Path(flash_root).parent, PRIVATE_DIR_MODE)
    ensure_dir(flash_root, PRIVATE_DIR_MODE)
    for device_id, key in host_keys.items():
        folder = Path(flash_root) / device_id
        ensure_dir(folder, PRIVATE_DIR_MODE)
        if key is not None and not (folder / KEY_RECORD).is_file():
            write_atomic(folder / KEY_RECORD, key.encode() + b"\n", mode=SECRET_MODE)
