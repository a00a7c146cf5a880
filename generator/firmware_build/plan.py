"""Which images a fleet needs: devices whose firmware projects have one fingerprint (`secrets: nvs`: everything that
tells devices apart lives in nvs.bin) share one PlatformIO run and one image, so a fleet costs one build per
target. Pure: reads the manifest and the projects' files, runs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from generator.core.errors import UserError
from generator.firmware.fingerprint import firmware_fingerprint
from generator.output.layout import MANIFEST_NAME
from generator.output.manifest import Manifest
from generator.spec.catalogue import Target


@dataclass(frozen=True)
class DeviceToBuild:
    id: str
    target: Target
    firmware_dir: Path                 # absolute
    nvs: Path | None                   # absolute; the device's NVS image when secrets live there
    client_cert: Path | None           # absolute; public, read for its serial and expiry
    embeds_secrets: bool               # the app image itself holds this device's key / passwords


@dataclass(frozen=True)
class Image:
    """One distinct firmware image: one PlatformIO run, shared by every device listed."""

    key: str                           # the firmware project's fingerprint (generator.firmware.fingerprint)
    target: Target
    project_dir: Path                  # where PlatformIO builds it: the first device's firmware directory
    devices: tuple[DeviceToBuild, ...]

    @property
    def env(self) -> str:
        return self.target.name

    @property
    def name(self) -> str:
        return f"{self.env}-{self.key[:12]}"

    @property
    def build_dir(self) -> Path:
        return self.project_dir / ".pio" / "build" / self.env

    def describe(self) -> str:
        ids = [d.id for d in self.devices]
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        return f"{self.env} ({shown})"


@dataclass(frozen=True)
class BuildPlan:
    out_dir: Path
    images: tuple[Image, ...]

    @property
    def devices(self) -> tuple[DeviceToBuild, ...]:
        return tuple(device for image in self.images for device in image.devices)


def plan_build(out_dir: Path, manifest: Manifest, catalogue: dict[str, Target],
               device_ids: Iterable[str] | None = None) -> BuildPlan:
    """Groups the manifest's devices by target and firmware fingerprint: one Image per distinct group."""
    out_dir = Path(out_dir).absolute()
    entries = {entry.id: entry for entry in manifest.devices}
    wanted = list(device_ids) if device_ids else list(entries)
    unknown = [device_id for device_id in wanted if device_id not in entries]
    if unknown:
        raise UserError(f"{out_dir / MANIFEST_NAME} has no device {', '.join(map(repr, unknown))}",
                        hint=f"use one of: {', '.join(entries)}")
    groups: dict[tuple[str, str], list[DeviceToBuild]] = {}
    for device_id in wanted:
        entry = entries[device_id]
        target = catalogue.get(entry.target)
        if target is None:
            raise UserError(f"device {device_id} names target {entry.target!r}, which the catalogue does not list",
                            hint="run `gen generate SPEC` again with a current spec")
        firmware_dir = out_dir / entry.firmware_dir
        if not (firmware_dir / "platformio.ini").is_file():
            raise UserError(f"{firmware_dir} holds no PlatformIO project", hint="run `gen generate SPEC` first")
        device = DeviceToBuild(
            id=device_id,
            target=target,
            firmware_dir=firmware_dir,
            nvs=out_dir / entry.nvs if entry.nvs else None,
            client_cert=out_dir / entry.client_cert if entry.client_cert else None,
            embeds_secrets=entry.secrets != "nvs",
        )
        groups.setdefault((target.name, firmware_fingerprint(firmware_dir)), []).append(device)
    leaders = {group: members[0].firmware_dir for group, members in groups.items()}
    if device_ids:
        # Build where the whole fleet builds this image (the first device with the same project), so building
        # one device reuses the fleet's PlatformIO build cache, and the fleet reuses this build.
        found: set[tuple[str, str]] = set()
        for entry in manifest.devices:
            if len(found) == len(leaders):
                break
            firmware_dir = out_dir / entry.firmware_dir
            if not (firmware_dir / "platformio.ini").is_file():
                continue
            group = (entry.target, firmware_fingerprint(firmware_dir))
            if group in leaders and group not in found:
                leaders[group] = firmware_dir
                found.add(group)
    images = tuple(
        Image(key=key, target=members[0].target, project_dir=leaders[(env, key)], devices=tuple(members))
        for (env, key), members in groups.items()
    )
    return BuildPlan(out_dir=out_dir, images=images)


def pio_run_args(image: Image) -> list[str]:
    return ["run", "-d", str(image.project_dir), "-e", image.env]


def pio_metadata_args(image: Image) -> list[str]:
    return ["project", "metadata", "-d", str(image.project_dir), "-e", image.env, "--json-output"]
