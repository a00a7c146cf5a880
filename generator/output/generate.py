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
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from generator.broker.rabbitmq_render import render_rabbitmq
from generator.broker.render import render_broker
from generator.broker.trust import broker_trust
from generator.core.errors import UserError
from generator.core.files import SECRET_MODE, create_file, remove_generated, write_tree
from generator.firmware.fingerprint import firmware_fingerprint, project_files
from generator.firmware.security import device_nvs_image, device_nvs_keys
from generator.firmware.app_layout import APP_COMPONENTS_DIR, APP_LIBRARIES_DIR, app_folders, app_root_path
from generator.firmware.render import USER_APP_SOURCE, AppLayout, render_app_starter, render_firmware
from generator.output.layout import (
    ARTIFACTS_DIR,
    BROKER_DIR,
    OTA_DIR,
    SIMULATE_DIR,
    DEVICE_CA,
    DEVICE_CERT,
    DEVICE_KEY,
    DEVICE_NVS,
    DEVICES_DIR,
    MANIFEST_NAME,
    SHARED_FIRMWARE_DIR,
    device_dir,
    device_file,
    firmware_dir,
    shared_firmware_dir,
)
from generator.output.manifest import (
    BuildRecord,
    DeviceRecord,
    device_record,
    previous_manifest,
    spec_manifest,
    write_manifest,
)
from generator.ota.signing import ensure_signing_key
from generator.pki.credentials import BrokerCredentials, ClientCredentials, SpecCredentials
from generator.pki.spec_identities import ensure_spec_identities
from generator.pki.layout import PkiLayout
from generator.provision.protocol import bootstrap_username
from generator.spec import BACKEND_IDENTITY, PROVISIONER_IDENTITY, Device, Spec


def spec_credentials(spec: Spec) -> SpecCredentials:
    """Issues what is missing in the spec's PKI and reuses everything else. A broker certificate from elsewhere
    (broker.ca_file, cert_file, key_file; generator.broker.trust) replaces the PKI's broker cert and root."""
    trust = broker_trust(spec)           # checked before anything is issued
    identities = ensure_spec_identities(spec)
    device_trust = trust.ca_pem if trust else identities.ca_pem
    broker_cert: bytes | None
    broker_key: bytes | None
    if trust is not None and trust.cert_pem is not None:
        broker_cert, broker_key = trust.cert_pem, trust.key_pem
    elif identities.broker is not None:
        broker_cert, broker_key = identities.broker.cert_pem, identities.broker.key_pem
    else:
        broker_cert = broker_key = None
    broker = BrokerCredentials(
        cafile_pem=identities.broker_cafile_pem,
        cert_pem=broker_cert,
        key_pem=broker_key,
        crl_pem=identities.crl_pem,
        passwords=tuple(sorted(identities.passwords.items())),
        salt_key=broker_key or identities.backend.key_pem,   # the backend's key when the broker's is not ours
        bootstrap_passwords=tuple(sorted((bootstrap_username(device_id), identities.bootstrap[device_id])
                                         for device_id in identities.bootstrap_open)),
    )
    devices = {}
    for device in spec.devices:
        identity = identities.devices.get(device.id) if device.uses_client_cert else None
        devices[device.id] = ClientCredentials(
            name=device.id,
            ca_pem=device_trust,
            cert_pem=identity.cert_pem if identity else None,
            key_pem=identity.key_pem if identity else None,
            password=identities.passwords.get(device.id) if device.uses_password else None,
            cert_serial=identity.serial if identity else None,
            cert_not_after=identity.not_after if identity else None,
            bootstrap_password=identities.bootstrap.get(device.id),
        )
    backend = ClientCredentials(
        name=BACKEND_IDENTITY,
        ca_pem=device_trust,
        cert_pem=identities.backend.cert_pem,
        key_pem=identities.backend.key_pem,
        password=identities.passwords.get(BACKEND_IDENTITY),
        cert_serial=identities.backend.serial,
        cert_not_after=identities.backend.not_after,
    )
    provisioner = None
    if identities.provisioner is not None:
        provisioner = ClientCredentials(name=PROVISIONER_IDENTITY, ca_pem=device_trust,
                                        cert_pem=identities.provisioner.cert_pem,
                                        key_pem=identities.provisioner.key_pem, password=None,
                                        cert_serial=identities.provisioner.serial,
                                        cert_not_after=identities.provisioner.not_after)
    return SpecCredentials(broker=broker, devices=devices, backend=backend, provisioner=provisioner)


@dataclass(frozen=True)
class GeneratedOutput:
    out_dir: Path
    changed: tuple[str, ...]          # paths (relative to OUT) whose content changed in this run
    devices: tuple[str, ...]          # device ids generated
    removed: tuple[str, ...] = ()     # paths (relative to OUT) an earlier run made and this one no longer does
    notes: tuple[str, ...] = ()       # what happened to the user's app sources (created, moved), for the user

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME


@dataclass(frozen=True)
class DeviceFiles:
    files: dict[str, bytes]           # relative to OUT
    modes: dict[str, int]


def render_device_files(device: Device, credentials: ClientCredentials, *, spec_name: str,
                        app: AppLayout = AppLayout(), with_nvs: bool = True, with_firmware: bool = True,
                        ota_public_key: bytes | None = None, nvs_keys: bytes | None = None) -> DeviceFiles:
    """All of one device's files under OUT/. `with_nvs=False`: no NVS image (a build without the PKI: it is made
    where the PKI lives). `with_firmware=False`: no firmware project (a `secrets: nvs` device's is its image's,
    `shared_firmware`). `ota_public_key`: the project's OTA signing key's public half (generator.ota.signing), with `ota:`.
    `nvs_keys`: with security.nvs_encryption, the device's nvs_keys partition (generator.firmware.security), which
    encrypts its nvs.bin; the keys themselves stay in pki/private/."""
    fw_base = firmware_dir(device.id)
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    if with_firmware:
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
    notes = ensure_user_apps(spec, out)
    credentials = spec_credentials(spec)
    render = render_rabbitmq if spec.broker.clustered else render_broker
    broker_files = render(spec, credentials.broker)
    ota_key = ensure_signing_key(PkiLayout(spec.pki.dir)).public_pem() if spec.ota_port is not None else None
    if any(device.security is not None and device.security.secure_boot == "v2" for device in spec.devices):
        ensure_signing_key(PkiLayout(spec.pki.dir))     # Secure Boot V2 signs the bootloader and app with it
    return _write_output(spec, out, device_ids, credentials.devices, broker_files.files, broker_files.modes,
                         with_nvs=True, notes=notes, ota_public_key=ota_key)


def generate_without_pki(spec: Spec, out_dir: Path | None = None, *, device_ids: list[str] | None = None,
                         credentials: Mapping[str, ClientCredentials]) -> GeneratedOutput:
    """What CI may make (generator.build.ci_credentials gives `credentials`): the PKI is never opened, so nothing is
    issued or signed; the firmware projects and the manifest only, no broker files and no NVS images."""
    out = Path(out_dir) if out_dir is not None else spec.default_out_dir
    notes = ensure_user_apps(spec, out)
    return _write_output(spec, out, device_ids, credentials, {}, {}, with_nvs=False, notes=notes,
                         ota_public_key=_public_ota_public_key(spec))


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


def _write_output(spec: Spec, out: Path, device_ids: list[str] | None,
                  credentials: Mapping[str, ClientCredentials], broker_files: Mapping[str, bytes],
                  broker_modes: Mapping[str, int], *, with_nvs: bool, notes: list[str],
                  ota_public_key: bytes | None = None) -> GeneratedOutput:
    selected = [spec.device(device_id) for device_id in device_ids] if device_ids else list(spec.devices)
    previous = previous_manifest(out)
    files: dict[str, bytes] = {f"{BROKER_DIR}/{path}": content for path, content in broker_files.items()}
    modes: dict[str, int] = {f"{BROKER_DIR}/{path}": mode for path, mode in broker_modes.items()}
    images, shared_files = shared_firmware(spec, out, credentials, ota_public_key=ota_public_key)
    files.update(shared_files)
    for device in selected:
        rendered = render_device_files(device, credentials[device.id], spec_name=spec.path.name,
                                       app=app_layout(out / firmware_dir(device.id), spec.directory),
                                       with_nvs=with_nvs, with_firmware=device.id not in images,
                                       ota_public_key=ota_public_key,
                                       nvs_keys=device_nvs_keys(device, PkiLayout(spec.pki.dir).private)
                                       if with_nvs else None)
        files.update(rendered.files)
        modes.update(rendered.modes)
        if device.id not in images and (out / firmware_dir(device.id)).is_symlink():
            (out / firmware_dir(device.id)).unlink()   # it was a secrets: nvs device: its project is its own now

    # What earlier runs made: devices not generated this time keep theirs, everything else no longer made goes.
    earlier_files = set(previous.generated_files) if previous else set()
    not_selected = {device_dir(d.id) + "/" for d in spec.devices if d not in selected}
    kept = {path for path in earlier_files if any(path.startswith(prefix) for prefix in not_selected)}
    links = {device.id: images[device.id] for device in selected if device.id in images}
    _check_linkable(out, links, earlier_files)
    changed = write_tree(out, files, modes=modes)
    stale = sorted(earlier_files - set(files) - kept - {MANIFEST_NAME})
    removed = remove_generated(out, stale)
    removed += _remove_departed_devices(out, spec)
    removed += _link_shared_firmware(out, links)
    removed += _remove_unused_images(out, set(images.values()))

    records = []
    for device in spec.devices:
        device_credentials = credentials[device.id]
        not_after = device_credentials.cert_not_after.isoformat() if device_credentials.cert_not_after else None
        record = device_record(device, cert_serial=device_credentials.cert_serial, cert_not_after=not_after,
                               has_nvs=device.secrets == "nvs" and with_nvs,
                               has_client_cert=(out / device_file(device.id, DEVICE_CERT)).is_file())
        earlier = previous.device(device.id) if previous else None
        build = _still_valid_build(out, record, earlier.artifacts if earlier else None)
        records.append(dataclasses.replace(record, artifacts=build))
    write_manifest(out, spec_manifest(spec, tuple(records), generated_files=tuple(sorted(set(files) | kept))))
    return GeneratedOutput(out_dir=out, changed=tuple(changed), devices=tuple(d.id for d in selected),
                           removed=tuple(removed), notes=tuple(notes))


# ---------------------------------------------------------------------------------------------- shared projects


def shared_firmware(spec: Spec, out: Path, credentials: Mapping[str, ClientCredentials], *,
                    ota_public_key: bytes | None = None) -> tuple[dict[str, str], dict[str, bytes]]:
    """The `secrets: nvs` devices' firmware, one project per distinct image (a target and everything compiled in):
    ({device id: image name}, {path under OUT: content}). An image is named after its target, or after its target
    and its first device when the target has several images. Every device of the spec counts, whichever are
    generated, so the names do not depend on what a run selects."""
    groups: dict[bytes, tuple[str, list[str], dict[str, bytes]]] = {}
    for device in spec.devices:
        if device.secrets != "nvs" or device.id not in credentials:
            continue
        project = render_firmware(device, credentials[device.id], spec_name=spec.path.name,
                                  app=app_layout(out / firmware_dir(device.id), spec.directory),
                                  ota_public_key=ota_public_key)
        key = hashlib.sha256(b"".join(path.encode() + b"\0" + hashlib.sha256(content).digest()
                                      for path, content in sorted(project.generated.items()))).digest()
        groups.setdefault(key, (device.target.name, [], project.generated))[1].append(device.id)
    per_target: dict[str, int] = {}
    for target, _, _ in groups.values():
        per_target[target] = per_target.get(target, 0) + 1
    images: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for target, members, generated in groups.values():
        image = target if per_target[target] == 1 else f"{target}-{members[0]}"
        images.update({member: image for member in members})
        files.update({f"{shared_firmware_dir(image)}/{path}": content for path, content in generated.items()})
    return images, files


def _check_linkable(out: Path, links: Mapping[str, str], earlier_files: set[str]) -> None:
    """Before anything is written: a device folder's firmware/ that is to become a link holds only what gen wrote
    there (listed in the manifest) and what PlatformIO makes; anything else is someone's, and stops the run."""
    for device_id in sorted(links):
        folder = out / firmware_dir(device_id)
        if folder.is_symlink() or not folder.is_dir():
            continue
        foreign = sorted(relative for relative in project_files(folder)
                         if f"{firmware_dir(device_id)}/{relative}" not in earlier_files)
        if foreign:
            raise UserError(f"{folder} holds files gen did not make ({', '.join(foreign[:5])}"
                            f"{', ...' if len(foreign) > 5 else ''}); with secrets: nvs it becomes a link to "
                            f"{out / shared_firmware_dir(links[device_id])}, the project of its image",
                            hint="move those files out of build/ (your code belongs in src/ next to the spec), then "
                                 "run gen generate again (nothing was changed)")


def _link_shared_firmware(out: Path, links: Mapping[str, str]) -> list[str]:
    """Each `secrets: nvs` device's firmware/ becomes a link to its image's project (relative, so OUT can move).
    A project an earlier gen wrote there has lost its files to the stale-file sweep by now; what PlatformIO left
    in it (.pio) goes too. Returns what was removed."""
    removed = []
    for device_id, image in sorted(links.items()):
        link = out / firmware_dir(device_id)
        target = os.path.relpath(out / shared_firmware_dir(image), link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_dir() and not link.is_symlink():   # only PlatformIO's outputs are left (_check_linkable)
            shutil.rmtree(link)
            removed.append(f"{firmware_dir(device_id)}/")
        link.parent.mkdir(parents=True, exist_ok=True)
        staged = link.with_name(f".{link.name}.link")
        staged.unlink(missing_ok=True)
        os.symlink(target, staged)
        os.replace(staged, link)
    return removed


def _remove_unused_images(out: Path, images: set[str]) -> list[str]:
    """A shared project no device builds any more (its files are gone already; PlatformIO's .pio may be left)."""
    parent = out / SHARED_FIRMWARE_DIR
    removed = []
    if parent.is_dir():
        for folder in sorted(parent.iterdir()):
            if folder.is_dir() and not folder.is_symlink() and folder.name not in images:
                shutil.rmtree(folder)
                removed.append(f"{folder.relative_to(out).as_posix()}/")
    return removed


# ---------------------------------------------------------------------------------------------- the user's code


def app_layout(firmware_dir: Path, spec_dir: Path) -> AppLayout:
    """Where a firmware project at firmware_dir finds the user's code next to the spec (its src/, lib/ and
    components/ as they are now)."""
    return AppLayout(root=app_root_path(firmware_dir, spec_dir), libraries=app_folders(spec_dir, APP_LIBRARIES_DIR),
                     components=app_folders(spec_dir, APP_COMPONENTS_DIR))


def ensure_user_apps(spec: Spec, out: Path) -> list[str]:
    """Each framework the spec uses has its app source next to the spec: an existing one is never touched; one
    that an earlier version of gen kept under OUT (devices/<id>/firmware/src/app.*) is moved there once; else a
    starter is written. Returns what was done, in words."""
    notes = []
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
            create_file(target, contents.pop())
            for path in legacy:
                path.unlink()
            notes.append(f"moved your app code {legacy[0]} to {target} (keep it in git; build/ is disposable)"
                         + (f", and removed {len(legacy) - 1} identical copies" if len(legacy) > 1 else ""))
            continue
        devices = [device for device in spec.devices if device.framework == framework]
        create_file(target, render_app_starter(devices))
        notes.append(f"created {target}: your app code, for every {framework} device of the spec (edit it, keep it "
                     "in git)")
    return notes


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
