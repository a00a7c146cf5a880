"""What gen simulate keeps of a device outside the spec's files (its host build in the user's cache, which holds its
private key with `secrets: embed`; its simulated flash), cleared as soon as a command sees that the device left the
spec or got a new key from gen: `gen simulate` before it runs, and `gen generate` (so a device removed or re-keyed
leaves no key behind even if the spec is never simulated again). The rules are private_cache's."""

from __future__ import annotations

import shutil
from pathlib import Path

from generator.core.errors import UserError
from generator.output.layout import SIMULATE_DIR
from generator.pki.spec_identities import open_spec_pki
from generator.simulate.device_runs import default_flash_root, default_host_build_cache
from generator.simulate.private_cache import OWNERS_FILE, forget_departed_builds, prepare_flash, purge_flash
from generator.spec import Spec


def host_key_digests(spec: Spec) -> dict[str, str | None]:
    """Each device's gen-made key (SHA-256 of its public key), None for one without (a password, its own key)."""
    store = open_spec_pki(spec, create=False)
    keys: dict[str, str | None] = {}
    for device in spec.devices:
        keys[device.id] = None
        if device.uses_client_cert and not device.makes_own_key:
            try:
                keys[device.id] = store.entry(device.id).key_sha256
            except (KeyError, UserError):
                pass
    return keys


def erase_departed_flash(spec: Spec, out_dir: Path, flash_root: Path, *, prepare: bool) -> list[str]:
    """The simulated flash of each device kept private, and wiped when the device left the spec or its gen-made key
    changed (OUT's simulated OTA flash: when it left the spec). `prepare`: make each device's flash folder (a run
    that will use them). Returns the ids wiped."""
    keys = host_key_digests(spec)
    wiped = purge_flash(flash_root, keys, [device.id for device in spec.devices if device.makes_own_key])
    simulated = Path(out_dir) / SIMULATE_DIR
    if simulated.is_dir():
        for folder in simulated.iterdir():
            if folder.is_dir() and folder.name not in keys:
                shutil.rmtree(folder, ignore_errors=True)
                wiped.append(folder.name)
    if prepare:
        prepare_flash(flash_root, keys)
    return sorted(set(wiped))


def forget_departed(spec: Spec, out_dir: Path, *, cache_dir: Path | None = None,
                    flash_root: Path | None = None) -> list[str]:
    """For `gen generate`: the simulated flash of the devices that left the spec or got a new key is wiped, and the
    host builds only they used are deleted (before the next `gen simulate` would). Returns the ids cleared."""
    flash_root = Path(flash_root) if flash_root is not None else default_flash_root(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_host_build_cache()
    simulated = flash_root.is_dir() or (Path(out_dir) / SIMULATE_DIR).is_dir()
    wiped = erase_departed_flash(spec, out_dir, flash_root, prepare=False) if simulated else []
    if (cache / OWNERS_FILE).is_file():
        forget_departed_builds(cache, spec.path, {}, [d.id for d in spec.devices if d.id not in wiped])
    return wiped


