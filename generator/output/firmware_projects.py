"""The firmware projects of OUT: where each project finds the user's code, and the `secrets: nvs` devices' shared
projects, one per distinct image (OUT/firmware/<image>/project), each such device's firmware/ a link to its image's.

Which image a device belongs to is what its rendered project is (a digest of its files); a device whose render
inputs did not change keeps the image it had (generator.output.render_cache), so a run with nothing changed renders
no project again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from generator.core.errors import UserError
from generator.firmware.app_layout import APP_COMPONENTS_DIR, APP_LIBRARIES_DIR, AppLayout, app_folders, app_root_path
from generator.firmware.fingerprint import project_files
from generator.output.layout import SHARED_FIRMWARE_DIR, firmware_dir, shared_firmware_dir
from generator.output.render_cache import RenderCache, inputs_digest
from generator.pki.credentials import ClientCredentials
from generator.spec.model import Device, Spec


def app_layout(firmware_dir: Path, spec_dir: Path) -> AppLayout:
    """Where a firmware project at firmware_dir finds the user's code next to the spec (its src/, lib/ and
    components/ as they are now)."""
    return AppLayout(root=app_root_path(firmware_dir, spec_dir), libraries=app_folders(spec_dir, APP_LIBRARIES_DIR),
                     components=app_folders(spec_dir, APP_COMPONENTS_DIR))


def device_inputs(spec: Spec, out: Path, credentials: Mapping[str, ClientCredentials],
                  nvs_keys: Mapping[str, tuple[bytes, bytes] | None], *, with_nvs: bool,
                  ota_public_key: bytes | None) -> tuple[dict[str, AppLayout], dict[str, str]]:
    """For every device with credentials: where its project finds the user's code, and the digest of everything its
    files are rendered from. The user's lib/ and components/ are listed once for all of them."""
    libraries = app_folders(spec.directory, APP_LIBRARIES_DIR)
    components = app_folders(spec.directory, APP_COMPONENTS_DIR)
    # Every device's project is as deep under OUT (a device id is one path component), so one path serves them all.
    root = app_root_path(out / firmware_dir(spec.devices[0].id), spec.directory) if spec.devices else ""
    apps, inputs = {}, {}
    for device in spec.devices:
        if device.id in credentials:
            apps[device.id] = AppLayout(root=root, libraries=libraries, components=components)
            inputs[device.id] = inputs_digest(device, credentials[device.id], spec.path.name, apps[device.id],
                                              with_nvs, ota_public_key, nvs_keys.get(device.id))
    return apps, inputs


@dataclass
class SharedFirmware:
    images: dict[str, str] = field(default_factory=dict)        # device id -> image name
    groups: dict[str, str] = field(default_factory=dict)        # device id -> its image's key (digest of the files)
    files: dict[str, bytes] = field(default_factory=dict)       # rendered this run: path under OUT -> content
    current: list[str] = field(default_factory=list)            # paths of images on disk as rendered before
    rendered: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # image -> (key, its paths)


def _project_key(generated: Mapping[str, bytes]) -> str:
    return hashlib.sha256(b"".join(path.encode() + b"\0" + hashlib.sha256(content).digest()
                                   for path, content in sorted(generated.items()))).hexdigest()


def _render_firmware(device: Device, credentials: ClientCredentials, spec_name: str, app: AppLayout,
                     ota_public_key: bytes | None) -> dict[str, bytes]:
    from generator.firmware.render import render_firmware   # jinja2 and the templates: when a project renders
    return render_firmware(device, credentials, spec_name=spec_name, app=app, ota_public_key=ota_public_key).generated


def shared_firmware(spec: Spec, out: Path, credentials: Mapping[str, ClientCredentials], inputs: Mapping[str, str],
                    cache: RenderCache, *, ota_public_key: bytes | None = None) -> SharedFirmware:
    """The `secrets: nvs` devices' firmware, one project per distinct image (a target and everything compiled in).
    An image is named after its target, or after its target and its first device when the target has several
    images. Every device of the spec counts, whichever are generated, so the names do not depend on what a run
    selects. `inputs`: each device's render-input digest; a device whose digest is the cached one keeps its image
    without being rendered, and an image whose files are on disk as gen left them is not rendered again."""
    shared = SharedFirmware()
    generated_by_key: dict[str, dict[str, bytes]] = {}
    members: dict[str, tuple[str, list[Device]]] = {}
    for device in spec.devices:
        if device.secrets != "nvs" or device.id not in credentials:
            continue
        key = cache.group_of(device.id, inputs[device.id])
        if key is None:
            project = _render_firmware(device, credentials[device.id], spec.path.name,
                                       app_layout(out / firmware_dir(device.id), spec.directory), ota_public_key)
            key = _project_key(project)
            generated_by_key.setdefault(key, project)
        shared.groups[device.id] = key
        members.setdefault(key, (device.target.name, []))[1].append(device)
    per_target: dict[str, int] = {}
    for target, _ in members.values():
        per_target[target] = per_target.get(target, 0) + 1
    for key, (target, group) in members.items():
        image = target if per_target[target] == 1 else f"{target}-{group[0].id}"
        shared.images.update({device.id: image for device in group})
        current = cache.current_image(image, key) if key not in generated_by_key else None
        if current is not None:
            shared.current += current
            continue
        generated = generated_by_key.get(key)
        if generated is None:      # every member is unchanged, but the image's files are not as gen left them
            first = group[0]
            generated = _render_firmware(first, credentials[first.id], spec.path.name,
                                         app_layout(out / firmware_dir(first.id), spec.directory), ota_public_key)
        paths = {f"{shared_firmware_dir(image)}/{path}": content for path, content in generated.items()}
        shared.files.update(paths)
        shared.rendered[image] = (key, tuple(paths))
    return shared


def check_linkable(out: Path, links: Mapping[str, str], earlier_files: set[str],
                   leaving: frozenset[Path] = frozenset()) -> None:
    """Before anything is written: a device folder's firmware/ that is to become a link holds only what gen wrote
    there (listed in the manifest) and what PlatformIO makes; anything else is someone's, and stops the run.
    `leaving`: the user's app sources an earlier gen kept there, which this run moves next to the spec."""
    for device_id in sorted(links):
        folder = out / firmware_dir(device_id)
        if folder.is_symlink() or not folder.is_dir():
            continue
        foreign = sorted(relative for relative in project_files(folder)
                         if f"{firmware_dir(device_id)}/{relative}" not in earlier_files
                         and folder / relative not in leaving)
        if foreign:
            raise UserError(f"{folder} holds files gen did not make ({', '.join(foreign[:5])}"
                            f"{', ...' if len(foreign) > 5 else ''}); with secrets: nvs it becomes a link to "
                            f"{out / shared_firmware_dir(links[device_id])}, the project of its image",
                            hint="move those files out of build/ (your code belongs in src/ next to the spec), then "
                                 "run gen generate again (nothing was changed)")


def link_shared_firmware(out: Path, links: Mapping[str, str]) -> list[str]:
    """Each `secrets: nvs` device's firmware/ becomes a link to its image's project (relative, so OUT can move).
    A project an earlier gen wrote there has lost its files to the stale-file sweep by now; what PlatformIO left
    in it (.pio) goes too. Returns what was removed."""
    removed = []
    targets: dict[str, str] = {}          # image -> the link's text: the same from every device's folder
    for device_id, image in sorted(links.items()):
        link = out / firmware_dir(device_id)
        target = targets.get(image) or targets.setdefault(
            image, os.path.relpath(out / shared_firmware_dir(image), link.parent))
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_dir() and not link.is_symlink():   # only PlatformIO's outputs are left (check_linkable)
            shutil.rmtree(link)
            removed.append(f"{firmware_dir(device_id)}/")
        link.parent.mkdir(parents=True, exist_ok=True)
        staged = link.with_name(f".{link.name}.link")
        staged.unlink(missing_ok=True)
        os.symlink(target, staged)
        os.replace(staged, link)
    return removed


def remove_unused_images(out: Path, images: set[str]) -> list[str]:
    """A shared project no device builds any more (its files are gone already; PlatformIO's .pio may be left)."""
    parent = out / SHARED_FIRMWARE_DIR
    removed = []
    if parent.is_dir():
        for folder in sorted(parent.iterdir()):
            if folder.is_dir() and not folder.is_symlink() and folder.name not in images:
                shutil.rmtree(folder)
                removed.append(f"{folder.relative_to(out).as_posix()}/")
    return removed
