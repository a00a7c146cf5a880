"""What a build leaves for flashing: each image's files kept once in OUT/images/<env>-<key>/, merged into one factory
image (esptool merge-bin), and hard-linked into each device's OUT/artifacts/<id>/ with its nvs.bin and flash.json;
then the build records in the manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from generator.core.errors import ToolError, UserError
from generator.core.files import SECRET_MODE, link_or_copy, write_atomic
from generator.firmware_build.flashing import (
    FACTORY_IMAGE,
    FLASH_JSON,
    NVS_IMAGE,
    FlashImage,
    FlashLayout,
    flash_settings,
    merge_bin_args,
    nvs_partition,
    parse_partition_table,
)
from generator.firmware_build.plan import DeviceToBuild
from generator.firmware_build.platformio import FIRMWARE_IMAGE, PARTITIONS_IMAGE, BuiltImage, display_path, tail
from generator.output.layout import IMAGES_DIR, artifacts_dir
from generator.output.manifest import ArtifactFile, BuildRecord, hex_offset, read_manifest, write_manifest


def merge_factory_image(built: BuiltImage, output: Path, *, esptool: str, log_path: Path) -> None:
    """esptool merge-bin: the image's files at their offsets, one file to flash at 0x0."""
    target = built.image.target
    argv = [esptool, *merge_bin_args(target.chip, flash_settings(target),
                                     [(offset, path) for offset, _, path in built.files], output)]
    output.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n" + completed.stdout + completed.stderr)
    if completed.returncode != 0 or not output.is_file():
        raise ToolError(f"esptool merge-bin failed (exit {completed.returncode}) for {built.image.describe()}:\n"
                        f"{tail(completed.stdout + completed.stderr, 8)}\nFull log: {display_path(log_path)}")


def _digest(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


@dataclass(frozen=True)
class SharedImage:
    """A built image's files, kept once in OUT/images/<name>/ for every device that uses it."""

    built: BuiltImage
    directory: Path
    files: tuple[ArtifactFile, ...]       # by offset; factory.bin is not among them
    factory: ArtifactFile
    partitions: bytes

    @property
    def app_sha256(self) -> str:
        return next(f.sha256 for f in self.files if f.file == FIRMWARE_IMAGE)


def store_shared_image(built: BuiltImage, out_dir: Path, *, esptool: str) -> SharedImage:
    image = built.image
    directory = out_dir / IMAGES_DIR / image.name
    mode = SECRET_MODE if any(d.embeds_secrets for d in image.devices) else 0o644
    files = []
    partitions = b""
    for offset, name, source in built.files:
        content = source.read_bytes()
        write_atomic(directory / name, content, mode=mode)
        files.append(ArtifactFile(name, offset, hashlib.sha256(content).hexdigest(), len(content)))
        if name == PARTITIONS_IMAGE:
            partitions = content
    factory_path = directory / FACTORY_IMAGE
    merge_factory_image(built, factory_path, esptool=esptool, log_path=built.log_path)
    os.chmod(factory_path, mode)
    factory = ArtifactFile(FACTORY_IMAGE, 0x0, *_digest(factory_path))
    return SharedImage(built=built, directory=directory, files=tuple(files), factory=factory, partitions=partitions)


def _cert_facts(cert_path: Path | None) -> dict[str, str] | None:
    if cert_path is None or not cert_path.is_file():
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return {"serial": f"{cert.serial_number:X}", "not_after": cert.not_valid_after_utc.isoformat()}


def collect_device_artifacts(device: DeviceToBuild, shared: SharedImage, out_dir: Path) -> BuildRecord:
    """OUT/artifacts/<id>/: the image's files (hard links), the device's nvs.bin, flash.json. Returns its record."""
    image = shared.built.image
    directory = out_dir / artifacts_dir(device.id)
    mode = SECRET_MODE if device.embeds_secrets else 0o644
    files = list(shared.files)
    for artifact in (*shared.files, shared.factory):
        link_or_copy(shared.directory / artifact.file, directory / artifact.file, mode)
    nvs_offset = None
    if device.nvs is None and not device.embeds_secrets:   # built without the PKI: nvs.bin is made at flash time
        partition = nvs_partition(parse_partition_table(shared.partitions))
        nvs_offset = partition.offset if partition is not None else None
    if device.nvs is not None:
        if not device.nvs.is_file():
            raise UserError(f"{device.nvs} is missing", hint="run `gen generate SPEC` again")
        partition = nvs_partition(parse_partition_table(shared.partitions))
        if partition is None:
            raise ToolError(f"the partition table built for {image.env} has no NVS partition, so {device.id}'s "
                            f"nvs.bin has nowhere to go. Use a partition table with an `nvs` data partition.")
        content = device.nvs.read_bytes()
        if len(content) > partition.size:
            raise ToolError(f"{device.id}'s nvs.bin is {len(content)} bytes but the NVS partition built for "
                            f"{image.env} holds {partition.size} ({hex_offset(partition.size)}); the partition table "
                            f"and the generator disagree. Regenerate with `gen generate`, then build again.")
        write_atomic(directory / NVS_IMAGE, content, mode=SECRET_MODE)
        files.append(ArtifactFile(NVS_IMAGE, partition.offset, hashlib.sha256(content).hexdigest(), len(content)))
    files.sort(key=lambda f: f.offset)
    layout = FlashLayout(
        device=device.id,
        chip=image.target.chip,
        settings=flash_settings(image.target),
        images=tuple(FlashImage(f.offset, f.file) for f in files),
        factory=FlashImage(shared.factory.offset, shared.factory.file),
        nvs_offset=nvs_offset,
    )
    write_atomic(directory / FLASH_JSON, (json.dumps(layout.to_json(), indent=2) + "\n").encode())
    keep = {f.file for f in files} | {FACTORY_IMAGE, FLASH_JSON}
    for stale in directory.iterdir():
        if stale.name not in keep and stale.is_file():
            stale.unlink()
    return BuildRecord(
        dir=_relative(directory, out_dir),
        flash=_relative(directory / FLASH_JSON, out_dir),
        image=shared.app_sha256,
        fingerprint=image.key,          # of the project it was built from: the record holds while this does
        image_dir=_relative(shared.directory, out_dir),
        built_in=_relative(image.project_dir, out_dir),
        log=_relative(shared.built.log_path, out_dir),
        target=image.env,
        chip=image.target.chip,
        platform=image.target.platform,
        framework=image.target.framework,
        framework_version=shared.built.framework_version,
        files=tuple(files),
        factory=shared.factory,
        cert=_cert_facts(device.client_cert),
    )


def _relative(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def update_manifest(out_dir: Path, records: dict[str, BuildRecord]) -> None:
    """Records each built device's build in OUT/manifest.json ("images" says which devices share which image).
    Devices not built this time keep what an earlier build recorded for them (`gen generate` kept those records
    whose firmware is unchanged). Removes the images no device uses any more."""
    manifest = read_manifest(out_dir).with_builds(records)
    write_manifest(out_dir, manifest)
    in_use = {out_dir / image.dir for image in manifest.images}
    for stale in (out_dir / IMAGES_DIR).iterdir() if (out_dir / IMAGES_DIR).is_dir() else ():
        if stale.is_dir() and stale not in in_use:
            shutil.rmtree(stale)  # an image no device uses any more (its sources changed)
