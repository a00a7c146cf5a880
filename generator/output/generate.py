"""`gen generate`: the spec and its PKI, turned into every file both ends of the link need.

    <spec folder>/src/app.cpp, src/app.c  the user's application code, one per framework the spec uses: created
                                      once from a starter, never overwritten, in git (USER_APP_SOURCE)
    OUT/broker/                       mosquitto.conf, certs, CRL, passwd, acl, operator README
    OUT/devices/<id>/firmware/        the device's PlatformIO project (it compiles the user's src/, lib/, components/);
                                      with secrets: nvs a link to its image's project, OUT/firmware/<image>/project/,
                                      one per distinct image however many devices share it
    OUT/devices/<id>/ca.pem, client.pem, client.key (0600)
    OUT/devices/<id>/nvs.bin          the NVS partition image (secrets: nvs), 0600
    OUT/manifest.json                 what was generated (every file of it listed), where, for whom

Everything is rendered in memory first (pure functions of spec + credentials), then written; a failure while
rendering writes nothing. OUT holds only what gen can make again: what a run no longer produces (a framework
switched, a device renamed or removed) is removed, and build records stay while the firmware they were built
from is unchanged. The PKI lives next to the spec, never in OUT: deleting OUT loses nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from generator.broker.render import render_broker
from generator.core.errors import UserError
from generator.core.files import SECRET_MODE, create_file, remove_generated, write_tree
from generator.firmware.app_layout import USER_APP_SOURCE, AppLayout
from generator.firmware.fingerprint import firmware_fingerprint
from generator.firmware.security import device_nvs_image, device_nvs_keys
from generator.output.firmware_projects import (
    SharedFirmware,
    check_linkable,
    device_inputs,
    link_shared_firmware,
    remove_unused_images,
    shared_firmware,
)
from generator.output.layout import (
    ARTIFACTS_DIR,
    BROKER_DIR,
    DEVICE_CA,
    DEVICE_CERT,
    DEVICE_KEY,
    DEVICE_NVS,
    DEVICES_DIR,
    MANIFEST_NAME,
    OTA_DIR,
    SIMULATE_DIR,
    device_dir,
    device_file,
    firmware_dir,
)
from generator.output.manifest import (
    BuildRecord,
    DeviceRecord,
    device_record,
    previous_manifest,
    spec_manifest,
    write_manifest,
)
from generator.output.render_cache import CACHE_NAME, RenderCache
from generator.output.up_to_date import pki_snapshot
from generator.pki.credentials import ClientCredentials
from generator.pki.layout import PkiLayout
from generator.pki.ota_signing import ensure_signing_key
from generator.pki.spec_credentials import spec_credentials
from generator.spec import Device, Spec


@dataclass(frozen=True)
class GeneratedOutput:
    out_dir: Path
    changed: tuple[str, ...]          # paths (relative to OUT) whose content changed in this run
    devices: tuple[str, ...]          # device ids generated
    removed: tuple[str, ...] = ()     # paths (relative to OUT) an earlier run made and this one no longer does
    notes: tuple[str, ...] = ()       # what happened to the user's app sources (created, moved), for the user
    files: tuple[str, ...] = ()       # every file of gen's in OUT after the run (relative to OUT), as the manifest
    pki_state: Mapping[str, object] | None = None   # the PKI's files as this run read them (output.up_to_date)

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME


@dataclass(frozen=True)
class DeviceFiles:
    files: dict[str, bytes]           # relative to OUT
    modes: dict[str, int]


def render_device_files(device: Device, credentials: ClientCredentials, *, spec_name: str,
                        app: AppLayout = AppLayout(), with_nvs: bool = True, with_firmware: bool = True,
                        ota_public_key: bytes | None = None,
                        nvs_keys: tuple[bytes, bytes] | None = None) -> DeviceFiles:
    """All of one device's files under OUT/. `with_nvs=False`: no NVS image (a build without the PKI: it is made
    where the PKI lives). `with_firmware=False`: no firmware project (a `secrets: nvs` device's is its image's,
    `shared_firmware`). `ota_public_key`: the project's OTA signing key's public half
    (generator.pki.ota_signing), with `ota:`. `nvs_keys`: with security.nvs_encryption, the device's NVS
    encryption keys (generator.firmware.security), which encrypt its nvs.bin; they stay in pki/private/."""
    fw_base = firmware_dir(device.id)
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    if with_firmware:
        from generator.firmware.render import render_firmware   # jinja2 and the templates: when a project renders
        project = render_firmware(device, credentials, spec_name=spec_name, app=app, ota_public_key=ota_public_key)
        files.update({f"{fw_base}/{path}": content for path, content in project.generated.items()})
        # Generated sources that embed the key and passwords (`secrets: embed`) are private too.
        for path in project.secret_files:
            modes[f"{fw_base}/{path}"] = SECRET_MODE
    if credentials.ca_pem:
        files[device_file(device.id, DEVICE_CA)] = credentials.ca_pem
    if credentials.cert_pem is not None and credentials.key_pem is not None:
        files[device_file(device.id, DEVICE_CERT)] = credentials.cert_pem
        files[device_file(device.id, DEVICE_KEY)] = credentials.key_pem
        modes[device_file(device.id, DEVICE_KEY)] = SECRET_MODE
    if device.secrets == "nvs" and with_nvs:
        files[device_file(device.id, DEVICE_NVS)] = device_nvs_image(device, credentials, nvs_keys)
        modes[device_file(device.id, DEVICE_NVS)] = SECRET_MODE
    return DeviceFiles(files, modes)


def generate(spec: Spec, out_dir: Path | None = None, *, device_ids: list[str] | None = None) -> GeneratedOutput:
    """Everything: the PKI issues what is missing; broker files, firmware projects, NVS images, manifest."""
    out = Path(out_dir) if out_dir is not None else spec.default_out_dir
    apps = plan_user_apps(spec, out)
    credentials = spec_credentials(spec)
    if spec.broker.clustered:
        from generator.broker.rabbitmq_render import render_rabbitmq as render
    else:
        render = render_broker
    broker_files = render(spec, credentials.broker)
    ota_key = ensure_signing_key(PkiLayout(spec.pki.dir)).public_pem() if spec.ota_port is not None else None
    if any(device.security is not None and device.security.secure_boot == "v2" for device in spec.devices):
        ensure_signing_key(PkiLayout(spec.pki.dir))     # Secure Boot V2 signs the bootloader and app with it
    pki_state = pki_snapshot(spec.pki.dir)      # as it was read: a later change, by anyone, is not in this run
    rendered = render_output(spec, out, device_ids, credentials.devices, broker_files.files, broker_files.modes,
                             with_nvs=True, ota_public_key=ota_key)
    return dataclasses.replace(write_output(spec, out, rendered, apps), pki_state=pki_state)


def generate_without_pki(spec: Spec, out_dir: Path | None = None, *, device_ids: list[str] | None = None,
                         credentials: Mapping[str, ClientCredentials]) -> GeneratedOutput:
    """What CI may make (generator.ci.credentials gives `credentials`): the PKI is never opened, so nothing is
    issued or signed; the firmware projects and the manifest only, no broker files and no NVS images."""
    out = Path(out_dir) if out_dir is not None else spec.default_out_dir
    apps = plan_user_apps(spec, out)
    rendered = render_output(spec, out, device_ids, credentials, {}, {}, with_nvs=False,
                             ota_public_key=_public_ota_public_key(spec))
    return write_output(spec, out, rendered, apps)


def _public_ota_public_key(spec: Spec) -> bytes | None:
    """Without the PKI (CI): the OTA signing key's public half, pki/ota-signing.pem (in git), with `ota:`."""
    if spec.ota_port is None:
        return None
    public = PkiLayout(spec.pki.dir).ota_signing_public
    try:
        return public.read_bytes()
    except OSError:
        raise UserError(f"the spec updates over the air, but {public} (the OTA signing key's public half) is not "
                        "here: the firmware must know the key its updates are signed with",
                        hint=f"run `gen generate` where the PKI lives, and commit {public}") from None


@dataclass(frozen=True)
class RenderedOutput:
    """Everything one run writes under OUT, rendered in memory (nothing is written until all of it is)."""

    selected: tuple[Device, ...]                  # the devices generated this run
    files: dict[str, bytes]                       # relative to OUT
    modes: dict[str, int]
    credentials: Mapping[str, ClientCredentials]  # device id -> what the manifest records of its identity
    with_nvs: bool
    cache: RenderCache
    shared: SharedFirmware                        # the secrets: nvs devices' images
    rendered: dict[str, tuple[str, tuple[str, ...]]]  # device id -> (inputs digest, its files): rendered this run
    current: tuple[str, ...] = ()                 # files whose inputs did not change, on disk as rendered before


def render_output(spec: Spec, out: Path, device_ids: list[str] | None,
                  credentials: Mapping[str, ClientCredentials], broker_files: Mapping[str, bytes],
                  broker_modes: Mapping[str, int], *, with_nvs: bool,
                  ota_public_key: bytes | None = None) -> RenderedOutput:
    """Every file of OUT for the selected devices (all by default), their shared images and the broker; nothing is
    written. A device whose render inputs did not change since the last run, and whose files are as gen left them,
    is not rendered again (generator.output.render_cache)."""
    selected = tuple(spec.device(device_id) for device_id in device_ids) if device_ids else spec.devices
    files: dict[str, bytes] = {f"{BROKER_DIR}/{path}": content for path, content in broker_files.items()}
    modes: dict[str, int] = {f"{BROKER_DIR}/{path}": mode for path, mode in broker_modes.items()}
    cache = RenderCache.read(out)
    private = PkiLayout(spec.pki.dir).private
    nvs_keys = {device.id: device_nvs_keys(device, private) if with_nvs else None for device in selected}
    apps, inputs = device_inputs(spec, out, credentials, nvs_keys, with_nvs=with_nvs, ota_public_key=ota_public_key)
    shared = shared_firmware(spec, out, credentials, inputs, cache, ota_public_key=ota_public_key)
    files.update(shared.files)
    rendered: dict[str, tuple[str, tuple[str, ...]]] = {}
    current: list[str] = list(shared.current)
    for device in selected:
        unchanged = cache.current_files(device.id, inputs[device.id])
        if unchanged is not None:
            current += unchanged
            continue
        device_files = render_device_files(device, credentials[device.id], spec_name=spec.path.name,
                                           app=apps[device.id], with_nvs=with_nvs,
                                           with_firmware=device.id not in shared.images, ota_public_key=ota_public_key,
                                           nvs_keys=nvs_keys[device.id])
        files.update(device_files.files)
        modes.update(device_files.modes)
        rendered[device.id] = (inputs[device.id], tuple(device_files.files))
    return RenderedOutput(selected, files, modes, credentials, with_nvs, cache, shared, rendered, tuple(current))


def write_output(spec: Spec, out: Path, rendered: RenderedOutput, apps: "UserApps") -> GeneratedOutput:
    """Writes what was rendered, once: the user's app sources that are missing, OUT's files (atomically, only
    those that changed), the removal of what earlier runs made and this one no longer does, the links of the
    `secrets: nvs` devices to their images, then the manifest."""
    previous = previous_manifest(out)
    # What earlier runs made: devices not generated this time keep theirs, everything else no longer made goes.
    earlier_files = set(previous.generated_files) if previous else set()
    selected_ids = {device.id for device in rendered.selected}
    images = rendered.shared.images
    links = {device_id: images[device_id] for device_id in selected_ids if device_id in images}
    check_linkable(out, links, earlier_files, apps.leaving())   # before anything is written
    notes = apps.write()
    for device_id in selected_ids - set(images):       # it was a secrets: nvs device: its project is its own now
        if (out / firmware_dir(device_id)).is_symlink():
            (out / firmware_dir(device_id)).unlink()
    not_selected = {device_dir(d.id) for d in spec.devices if d.id not in selected_ids}
    kept = {path for path in earlier_files if "/".join(path.split("/", 2)[:2]) in not_selected}
    made = set(rendered.files) | set(rendered.current)
    changed = write_tree(out, rendered.files, modes=rendered.modes)
    for device_id, (inputs, paths) in rendered.rendered.items():
        rendered.cache.record(device_id, inputs, paths, group=rendered.shared.groups.get(device_id))
    for image, (key, paths) in rendered.shared.rendered.items():
        rendered.cache.record_image(image, key, paths)
    rendered.cache.write({device.id for device in spec.devices}, set(images.values()))
    stale = sorted(earlier_files - made - kept - {MANIFEST_NAME})
    removed = remove_generated(out, stale)
    removed += _remove_departed_devices(out, spec)
    removed += link_shared_firmware(out, links)
    removed += remove_unused_images(out, set(images.values()))

    records = []
    for device in spec.devices:
        device_credentials = rendered.credentials[device.id]
        not_after = device_credentials.cert_not_after.isoformat() if device_credentials.cert_not_after else None
        record = device_record(device, cert_serial=device_credentials.cert_serial, cert_not_after=not_after,
                               has_nvs=device.secrets == "nvs" and rendered.with_nvs,
                               has_client_cert=(out / device_file(device.id, DEVICE_CERT)).is_file())
        earlier = previous.device(device.id) if previous else None
        build = _still_valid_build(out, record, earlier.artifacts if earlier else None)
        records.append(dataclasses.replace(record, artifacts=build))
    manifest = spec_manifest(spec, tuple(records), generated_files=tuple(sorted(made | kept)))
    if manifest != previous:          # the same manifest is not written (nor serialised) again
        write_manifest(out, manifest)
    return GeneratedOutput(out_dir=out, changed=tuple(changed), devices=tuple(d.id for d in rendered.selected),
                           removed=tuple(removed), notes=tuple(notes),
                           files=(*manifest.generated_files, MANIFEST_NAME, CACHE_NAME))


# ---------------------------------------------------------------------------------------------- the user's code


@dataclass(frozen=True)
class UserApps:
    """What a run does to the user's app sources next to the spec, decided before anything is written: starters to
    create (never over an existing file) and sources an earlier gen kept under OUT to move there."""

    create: tuple[tuple[Path, bytes, str], ...] = ()           # (target, content, note)
    move: tuple[tuple[Path, bytes, tuple[Path, ...], str], ...] = ()  # (target, content, legacy copies, note)

    def leaving(self) -> frozenset[Path]:
        """The sources an earlier gen kept under OUT that move next to the spec."""
        return frozenset(path for _, _, legacy, _ in self.move for path in legacy)

    def write(self) -> list[str]:
        notes = []
        for target, content, legacy, note in self.move:
            create_file(target, content)
            for path in legacy:
                path.unlink()
            notes.append(note)
        for target, content, note in self.create:
            create_file(target, content)
            notes.append(note)
        return notes


def plan_user_apps(spec: Spec, out: Path) -> UserApps:
    """Each framework the spec uses has its app source next to the spec: an existing one is never touched; one
    that an earlier version of gen kept under OUT (devices/<id>/firmware/src/app.*) is moved there once; else a
    starter is written. Reads only; UserApps.write does it."""
    create, move = [], []
    for framework in sorted({device.framework for device in spec.devices}):
        target = spec.directory / USER_APP_SOURCE[framework]
        if target.exists():
            continue
        legacy = _legacy_app_sources(out, framework)
        if legacy:
            contents = {path.read_bytes() for path in legacy}
            if len(contents) > 1:
                shown = "\n  ".join(str(path) for path in legacy)
                raise UserError(
                    f"your app code now lives in {target} (one file for every device, in git), but the copies an "
                    f"earlier gen kept under {out} differ:\n  {shown}",
                    hint=f"merge them into {target} yourself, then run gen generate again (nothing was changed)")
            note = (f"moved your app code {legacy[0]} to {target} (keep it in git; build/ is disposable)"
                    + (f", and removed {len(legacy) - 1} identical copies" if len(legacy) > 1 else ""))
            move.append((target, contents.pop(), tuple(legacy), note))
            continue
        devices = [device for device in spec.devices if device.framework == framework]
        from generator.firmware.render import render_app_starter
        create.append((target, render_app_starter(devices), f"created {target}: your app code, for every "
                       f"{framework} device of the spec (edit it, keep it in git)"))
    return UserApps(tuple(create), tuple(move))


def _legacy_app_sources(out: Path, framework: str) -> list[Path]:
    """App sources gen < 0.2 created inside each device's firmware project (they are the user's own code)."""
    name = USER_APP_SOURCE[framework]
    found = []
    for candidate in sorted((out / DEVICES_DIR).glob(f"*/firmware/{name}")):
        head = candidate.read_bytes()[:200]
        if b"Generated by gen" not in head:        # the include file gen writes there now is not the user's
            found.append(candidate)
    return found


# ---------------------------------------------------------------------------------------------- OUT/ upkeep


def _remove_departed_devices(out: Path, spec: Spec) -> list[str]:
    """A device no longer in the spec leaves nothing behind: its folder (keys, firmware, PlatformIO's build), its
    build artifacts and published OTA images (an image with `secrets: embed` holds its key), its simulated flash."""
    current = {device.id for device in spec.devices}
    removed = []
    for parent in (out / DEVICES_DIR, out / ARTIFACTS_DIR, out / OTA_DIR, out / SIMULATE_DIR):
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            if folder.is_dir() and folder.name not in current:
                shutil.rmtree(folder)
                removed.append(f"{folder.relative_to(out).as_posix()}/")
    return removed


def _still_valid_build(out: Path, device: DeviceRecord, build: BuildRecord | None) -> BuildRecord | None:
    """The record of an earlier `gen build`, while it still describes what would be flashed: the firmware project
    it was built from is unchanged, and so is the device's nvs.bin."""
    if build is None or not build.fingerprint:
        return None
    project = out / device.firmware_dir
    if not (project / "platformio.ini").is_file() or firmware_fingerprint(project) != build.fingerprint:
        return None
    built_nvs = build.file(DEVICE_NVS)
    if device.nvs or built_nvs:
        current = out / device.nvs if device.nvs else None
        if built_nvs is None or current is None or not current.is_file() \
                or hashlib.sha256(current.read_bytes()).hexdigest() != built_nvs.sha256:
            return None
    return build
