"""OUT/manifest.json: what was generated, where, for whom, and what was built from it. Paths are relative to the
manifest (output.layout spells them); no secret, ever. `Manifest` is the typed form every command reads and writes.

Contract (DESIGN.md): {"version": 1, "project", "spec", "broker": {"host", "names", "port", "config", "ca",
"external"} ("config" null for a broker gen does not run),
"devices": [{"id", "target", "framework", "board", "chip", "platform", "auth", "secrets", "client_id", "username",
"firmware_dir", "ca", "client_cert", "client_key", "cert_serial", "cert_not_after", "nvs", "publish": [...],
"subscribe": [...], "status_topic", "key_origin", "artifacts"?}], "images"?: [...], "generated_files": [...]}.
`gen generate` writes it, listing in "generated_files" every file it wrote under OUT (so the next run removes what
it no longer makes); a device's "client_cert"/"client_key"/"nvs" name only files OUT holds (a device that makes its
own key, "key_origin": "device", has its key only on the device and its certificate once provisioned); `gen build`
adds each device's "artifacts" (its build record) and the "images" they share.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from generator.core.errors import UserError
from generator.core.files import write_atomic
from generator.output.layout import (
    BROKER_DIR,
    DEVICE_CA,
    DEVICE_CERT,
    DEVICE_KEY,
    DEVICE_NVS,
    MANIFEST_NAME,
    device_file,
    firmware_dir,
)
from generator.spec.model import Device, Spec

MANIFEST_VERSION = 1


def hex_offset(offset: int) -> str:
    """A flash offset as the manifest and flash.json write it."""
    return f"0x{offset:x}"


def parse_offset(text: str | int) -> int:
    return text if isinstance(text, int) else int(str(text), 0)


@dataclass(frozen=True)
class ArtifactFile:
    """One file of a build, where it goes in flash, and its digest."""

    file: str
    offset: int
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "offset": hex_offset(self.offset), "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ArtifactFile":
        return cls(str(data["file"]), parse_offset(data["offset"]), str(data["sha256"]), int(data["size"]))


@dataclass(frozen=True)
class BuildRecord:
    """What `gen build` made for one device ("artifacts"); it holds while `fingerprint` is the firmware's."""

    dir: str                     # OUT/artifacts/<id>/
    flash: str                   # its flash.json
    image: str                   # sha256 of the app image
    fingerprint: str             # of the firmware project it was built from (generator.firmware.fingerprint)
    image_dir: str               # OUT/images/<name>/, shared with every device of the image
    built_in: str                # the PlatformIO project it was built in (its .pio holds firmware.elf)
    log: str
    target: str
    chip: str
    platform: str
    framework: str
    framework_version: str | None
    files: tuple[ArtifactFile, ...]        # in flash order; nvs.bin among them when the device has one
    factory: ArtifactFile
    cert: Mapping[str, str] | None         # the client certificate's serial and expiry at build time

    def file(self, name: str) -> ArtifactFile | None:
        return next((f for f in self.files if f.file == name), None)

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["files"] = [f.to_json() for f in self.files]
        document["factory"] = self.factory.to_json()
        document["cert"] = dict(self.cert) if self.cert else None
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BuildRecord":
        values: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        values["fingerprint"] = str(data.get("fingerprint") or "")   # records of gen < 0.2 have none: stale
        values["files"] = tuple(ArtifactFile.from_json(f) for f in data["files"])
        values["factory"] = ArtifactFile.from_json(data["factory"])
        return cls(**values)


@dataclass(frozen=True)
class PublishRecord:
    name: str
    topic: str
    qos: int
    retain: bool
    interval: int


@dataclass(frozen=True)
class SubscribeRecord:
    name: str
    filter: str
    qos: int


@dataclass(frozen=True)
class DeviceRecord:
    id: str
    target: str
    framework: str
    board: str
    chip: str
    platform: str
    auth: str
    secrets: str
    client_id: str
    username: str
    firmware_dir: str
    ca: str
    client_cert: str | None
    client_key: str | None
    cert_serial: str | None
    cert_not_after: str | None
    nvs: str | None
    publish: tuple[PublishRecord, ...]
    subscribe: tuple[SubscribeRecord, ...]
    status_topic: str
    artifacts: BuildRecord | None = None
    key_origin: str = "host"     # "device": the key never leaves the device (spec pki.key_origin)

    def to_json(self) -> dict[str, Any]:
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        document["publish"] = [dataclasses.asdict(p) for p in self.publish]
        document["subscribe"] = [dataclasses.asdict(s) for s in self.subscribe]
        if self.artifacts is None:
            del document["artifacts"]
        else:
            document["artifacts"] = self.artifacts.to_json()
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DeviceRecord":
        values: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        values["publish"] = tuple(PublishRecord(**p) for p in data.get("publish", []))
        values["subscribe"] = tuple(SubscribeRecord(**s) for s in data.get("subscribe", []))
        artifacts = data.get("artifacts")
        values["artifacts"] = BuildRecord.from_json(artifacts) if artifacts else None
        return cls(**values)


@dataclass(frozen=True)
class BrokerRecord:
    host: str
    names: tuple[str, ...]
    port: int
    config: str | None           # None for a broker gen does not run (broker.external)
    ca: str
    external: bool = False


@dataclass(frozen=True)
class ImageRecord:
    """One built image and the devices that share it."""

    sha256: str
    target: str
    dir: str
    devices: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    project: str
    spec: str
    broker: BrokerRecord
    devices: tuple[DeviceRecord, ...]
    generated_files: tuple[str, ...] = ()
    version: int = MANIFEST_VERSION

    def device(self, device_id: str) -> DeviceRecord | None:
        return self._by_id.get(device_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, DeviceRecord]:
        """The records by device id, made once (a lookup per device must not walk them all)."""
        return {record.id: record for record in self.devices}

    @property
    def images(self) -> tuple[ImageRecord, ...]:
        """Which devices share which built image, from their build records."""
        images: dict[str, ImageRecord] = {}
        for device in self.devices:
            built = device.artifacts
            if built is not None:
                known = images.get(built.image) or ImageRecord(built.image, built.target, built.image_dir, ())
                images[built.image] = dataclasses.replace(known, devices=known.devices + (device.id,))
        return tuple(images.values())

    def with_builds(self, records: Mapping[str, BuildRecord]) -> "Manifest":
        """This manifest with these devices' build records set (others keep theirs)."""
        return dataclasses.replace(self, devices=tuple(
            dataclasses.replace(d, artifacts=records[d.id]) if d.id in records else d for d in self.devices))

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "version": self.version,
            "project": self.project,
            "spec": self.spec,
            "broker": {**dataclasses.asdict(self.broker), "names": list(self.broker.names)},
            "devices": [d.to_json() for d in self.devices],
        }
        if self.images:
            document["images"] = [{**dataclasses.asdict(i), "devices": list(i.devices)} for i in self.images]
        document["generated_files"] = list(self.generated_files)
        return (json.dumps(document, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        """Raises ValueError (KeyError, TypeError included) for anything that is not a manifest gen wrote."""
        try:
            data = json.loads(text)
            broker = data["broker"]
            return cls(
                project=str(data["project"]),
                spec=str(data.get("spec", "")),
                broker=BrokerRecord(str(broker["host"]), tuple(broker.get("names", ())), int(broker["port"]),
                                    broker.get("config"), str(broker["ca"]), bool(broker.get("external", False))),
                devices=tuple(DeviceRecord.from_json(d) for d in data["devices"]),
                generated_files=tuple(data.get("generated_files", ())),
                version=int(data.get("version", MANIFEST_VERSION)),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a gen manifest ({error.__class__.__name__}: {error})") from None


def device_record(device: Device, *, cert_serial: int | None, cert_not_after: str | None,
                  has_nvs: bool | None = None, has_client_cert: bool | None = None) -> DeviceRecord:
    """The device's manifest entry. `has_nvs`: whether OUT holds its NVS image (default: with `secrets: nvs`; not
    in a build without the PKI, where it is made at flash time). `has_client_cert`: whether OUT holds its client
    certificate (default: with a client certificate gen issues, i.e. not for a device that makes its own key, whose
    certificate comes from provisioning). A device that makes its own key never has a key file in OUT."""
    with_cert = device.uses_client_cert and (not device.makes_own_key if has_client_cert is None else has_client_cert)
    return DeviceRecord(
        id=device.id,
        target=device.target.name,
        framework=device.framework,
        board=device.board,
        chip=device.chip,
        platform=device.target.platform,
        auth=device.auth,
        secrets=device.secrets,
        client_id=device.client_id,
        username=device.username,
        firmware_dir=firmware_dir(device.id),
        ca=device_file(device.id, DEVICE_CA),
        client_cert=device_file(device.id, DEVICE_CERT) if with_cert else None,
        client_key=device_file(device.id, DEVICE_KEY) if with_cert and not device.makes_own_key else None,
        cert_serial=f"{cert_serial:X}" if cert_serial is not None else None,
        cert_not_after=cert_not_after,
        nvs=device_file(device.id, DEVICE_NVS) if (device.secrets == "nvs" if has_nvs is None else has_nvs) else None,
        publish=tuple(PublishRecord(p.name, p.topic, p.qos, p.retain, p.interval) for p in device.publish),
        subscribe=tuple(SubscribeRecord(s.name, s.filter, s.qos) for s in device.subscribe),
        status_topic=device.status.topic,
        key_origin=device.pki.key_origin,
    )


def spec_manifest(spec: Spec, devices: tuple[DeviceRecord, ...], *, generated_files: tuple[str, ...]) -> Manifest:
    return Manifest(
        project=spec.project,
        spec=str(spec.path),
        broker=BrokerRecord(spec.broker.host, tuple(spec.broker.names), spec.broker.port,
                            None if spec.broker.external else f"{BROKER_DIR}/mosquitto.conf", f"{BROKER_DIR}/ca.pem",
                            spec.broker.external),
        devices=devices,
        generated_files=generated_files,
    )


def previous_manifest(out_dir: Path) -> Manifest | None:
    """The manifest an earlier run left in OUT, or None (none yet, or not one gen can read)."""
    try:
        return Manifest.from_json((Path(out_dir) / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return None


def read_manifest(out_dir: Path) -> Manifest:
    path = Path(out_dir) / MANIFEST_NAME
    try:
        return Manifest.from_json(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist", hint="run `gen generate SPEC` first")
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable manifest: {error}", hint="run `gen generate SPEC` again")


def write_manifest(out_dir: Path, manifest: Manifest) -> None:
    write_atomic(Path(out_dir) / MANIFEST_NAME, manifest.to_json())
