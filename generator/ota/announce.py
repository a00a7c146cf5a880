"""`gen ota publish`: an image checked, staged where `gen ota serve` serves it, and announced to the device on its OTA
topic (retained, QoS 1: a device that is offline gets it when it comes back).

    {"version": "1.3.0", "size": 1232896, "sha256": "<64 hex digits>",
     "url": "https://<broker.host>:<ota.port>/<device id>/<sha256>.bin", "target": "esp32-espidf", "project": "..."}

No signature travels in the announcement: it is inside the image, and the device checks it. Before announcing, the
image must be one the device will take: an app image for its chip, signed with the project's key, small enough for
its slot, of the announced version (ESP-IDF: its esp_app_desc_t; Arduino: the version record its firmware carries),
with security.secure_version, a secure_version (esp_app_desc_t) not below the spec's (the eFuse of a device that
runs the spec's firmware holds that much; no permission gets an image below it booted), and not older than the
spec's firmware.version unless the user asks for a downgrade (`--allow-downgrade`). A downgrade's announcement
carries `"downgrade": "<not after>:<from version>:<signature>"`, a permission signed with the project's OTA signing
key for this device, this image and this version, for a device running the spec's firmware.version, until a date
(generator.pki.ota_signing.sign_downgrade); the device refuses an older image without a permission that verifies,
holds for what it runs and has not expired, so holding gen's OTA identity, or an announcement captured earlier, is
not enough to roll a device back. Images are staged only once the broker has taken gen's OTA identity, and each
device keeps its current and previous image staged, no more. The announcement is published as gen's own OTA identity
(OTA_IDENTITY), the only one the ACL lets write OTA topics.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from generator.core.app_image import CHIP_IDS, ImageError, read_image, recorded_version
from generator.core.errors import GenError, ToolError, UserError
from generator.core.files import PRIVATE_DIR_MODE, PUBLIC_MODE, SECRET_MODE, ensure_dir, write_atomic
from generator.core.mqtt_wire import ConnectionClosed, MqttSession
from generator.doctor.identity_session import gen_identity_session
from generator.doctor.probes import Address
from generator.ota.nodes import BrokerNode, broker_nodes
from generator.output.layout import ota_image
from generator.pki.ota_signing import DowngradePermission, SigningKey, sign_downgrade, signature_problem
from generator.spec.contract import OTA_IDENTITY
from generator.spec.device_limits import OTA_ANNOUNCEMENT_CAPACITY, OTA_QOS
from generator.spec.firmware_version import version_order
from generator.spec.model import Device, Spec



@dataclass(frozen=True)
class Announcement:
    version: str
    size: int
    sha256: str
    url: str
    target: str
    project: str
    downgrade: str = ""              # a deliberate downgrade's signed permission (DowngradePermission.text()), or none

    def payload(self) -> bytes:
        fields: dict[str, object] = {"version": self.version, "size": self.size, "sha256": self.sha256,
                                     "url": self.url, "target": self.target, "project": self.project}
        if self.downgrade:
            fields["downgrade"] = self.downgrade
        text = json.dumps(fields, separators=(",", ":")).encode()
        assert len(text) <= OTA_ANNOUNCEMENT_CAPACITY, "the firmware's buffer is sized for every announcement"
        return text


def image_url(device: Device, sha256: str) -> str:
    assert device.ota is not None
    return f"https://{device.broker.host}:{device.ota.port}/{device.id}/{sha256}.bin"


def slot_size(firmware_dir: Path) -> int | None:
    """The size of the device's second app slot (where an update goes), from its partitions.csv."""
    try:
        text = (firmware_dir / "partitions.csv").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = [field.strip() for field in line.split("#", 1)[0].split(",")]
        if len(fields) >= 5 and fields[1] == "app" and fields[2] == "ota_1":
            return int(fields[4], 0)
    return None


def check_image(device: Device, image: Path, version: str, key: SigningKey, *, slot: int | None) -> bytes:
    """The image's bytes, when the device will take it; else UserError (exit 2) saying why."""
    try:
        data = image.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {image}: {error.strerror}",
                        hint="give the path of a built firmware.bin") from None
    try:
        parsed = read_image(data)
    except ImageError as error:
        raise UserError(f"{image} is not an app image: {error}",
                        hint="give the firmware.bin `gen build` made") from None
    if parsed.chip_id != CHIP_IDS[device.chip]:
        raise UserError(f"{image} is built for {parsed.chip}, but device {device.id} is {device.chip} "
                        f"({device.target.name})", hint="announce an image built for that device's target")
    problem = signature_problem(image, key)
    if problem is not None:
        raise UserError(f"{image} would be refused by {device.id}: {problem}",
                        hint="announce the firmware.bin of `gen build`, which signs it with "
                             "pki/private/ota-signing-key.pem; "
                             "for an unsigned image built elsewhere (CI), add --sign to sign it here")
    if slot is not None and len(data) > slot:
        raise UserError(f"{image} is {len(data):,} bytes; {device.id}'s app slot holds {slot:,}",
                        hint="make the firmware smaller")
    if device.framework == "espidf" and parsed.version != version:
        raise UserError(f"{image} is version {parsed.version!r} (its esp_app_desc_t), not {version!r}",
                        hint="give the version the image was built as (--version), or build the spec's version")
    floor = device.security.secure_version if device.security is not None else None
    if device.framework == "espidf" and floor is not None and parsed.secure_version < floor:
        raise UserError(f"{image} has secure version {parsed.secure_version} (its esp_app_desc_t), below the spec's "
                        f"security.secure_version {floor}: {device.id}'s eFuse holds at least {floor} once it runs "
                        "this spec's firmware, and it never boots an image below that, downgrade or not",
                        hint=f"announce an image built with security.secure_version {floor} or more; an image that "
                             "must never come back stays below it by design")
    if device.framework == "arduino":
        recorded = recorded_version(data)
        if recorded is None:
            raise UserError(f"{image} carries no gen version record, so {device.id} would refuse it",
                            hint="announce a firmware.bin that `gen build` made from this version of gen")
        if recorded != version:
            raise UserError(f"{image} is version {recorded!r} (its version record), not {version!r}",
                            hint="give the version the image was built as (--version), or build the spec's version")
    return data


def rollback_problem(device: Device, version: str, *, allow_downgrade: bool) -> UserError | None:
    """Why announcing `version` to `device` would roll it back (older than the spec's firmware.version, or not
    orderable against it), unless the user allows a downgrade."""
    if allow_downgrade:
        return None
    order = version_order(version, device.firmware_version)
    if order is None:
        return UserError(f"{version!r} and {device.id}'s firmware.version {device.firmware_version!r} cannot be "
                         "ordered (MAJOR.MINOR.PATCH[-pre-release][+build] expected), so the device would refuse it",
                         hint="use versions such as 1.3.0 (git tag v1.3.0), or pass --allow-downgrade to announce "
                              "it as a deliberate downgrade")
    if order < 0:
        return UserError(f"{version} is older than {device.id}'s firmware.version {device.firmware_version}: the "
                         "device refuses a downgrade",
                         hint="announce a newer version, or pass --allow-downgrade to announce this one as a "
                              "deliberate downgrade (the device then takes it)")
    return None


STAGED_KEPT = 2          # the image announced now and the one before it


def stage_image(out_dir: Path, device: Device, data: bytes) -> str:
    """OUT/ota/<id>/<sha256>.bin, what `gen ota serve` serves (private when the image holds the device's key)."""
    sha256 = hashlib.sha256(data).hexdigest()
    path = Path(out_dir) / ota_image(device.id, sha256)
    ensure_dir(path.parent, PRIVATE_DIR_MODE)
    write_atomic(path, data, mode=SECRET_MODE if device.secrets == "embed" else PUBLIC_MODE)
    return sha256


def prune_staged(out_dir: Path, device: Device, current: str) -> list[Path]:
    """Removes the device's staged images but `current` (a sha256) and the one staged last before it: an old image
    stays servable no longer than it is needed. Returns what it removed."""
    folder = (Path(out_dir) / ota_image(device.id, current)).parent
    others = sorted((path for path in folder.glob("*.bin") if path.stem != current),
                    key=lambda path: path.stat().st_mtime_ns, reverse=True)
    removed = others[STAGED_KEPT - 1:]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@dataclass(frozen=True)
class Downgrade:
    """How `gen ota publish --allow-downgrade` signs permissions: with this key, valid until `not_after`."""

    key: SigningKey
    not_after: dt.datetime


def announcement(device: Device, data: bytes, version: str, *, downgrade: Downgrade | None = None) -> Announcement:
    """The announcement of this image; with `downgrade`, a deliberate one whose permission it signs for the device
    while it runs the spec's firmware.version."""
    assert device.ota is not None
    sha256 = hashlib.sha256(data).hexdigest()
    permission: DowngradePermission | None = None
    if downgrade is not None:
        permission = sign_downgrade(downgrade.key, device.id, sha256, version, from_version=device.firmware_version,
                                    not_after=downgrade.not_after)
    return Announcement(version=version, size=len(data), sha256=sha256, url=image_url(device, sha256),
                        target=device.target.name, project=device.ota.project,
                        downgrade=permission.text() if permission is not None else "")


# ---------------------------------------------------------------------------------------------- MQTT


@dataclass(frozen=True)
class NodeReach:
    """Where retained messages reached: the nodes that took every one, and each node that did not, with why."""

    reached: tuple[BrokerNode, ...]
    missed: tuple[tuple[BrokerNode, str], ...]

    def summary(self) -> str:
        total = len(self.reached) + len(self.missed)
        return f"{len(self.reached)} of {total} node{'s' if total != 1 else ''}"


@contextlib.contextmanager
def publisher_session(spec: Spec, node: BrokerNode) -> Iterator[MqttSession]:
    """An MQTT session as OTA_IDENTITY with one broker node, its certificate verified as node.server_name."""
    with gen_identity_session(spec, OTA_IDENTITY, node.address, called="gen's OTA identity",
                              server_name=node.server_name) as session:
        yield session


def on_each_node(spec: Spec, nodes: Sequence[BrokerNode], work: Callable[[BrokerNode, MqttSession], None]
                 ) -> NodeReach:
    """Runs `work` in a publisher session with each node in turn, one at a time: RabbitMQ lets one client id hold
    one session in the whole cluster, so a second session of gen's OTA identity would end the first. A node that
    cannot be reached, refuses the identity or closes the connection is `missed`, with why. When no node is
    reached: the error every node gave (the PKI lacks the identity, the one broker is down: as with one broker),
    else a ToolError (exit 1) naming each node."""
    reached: list[BrokerNode] = []
    missed: list[tuple[BrokerNode, GenError]] = []
    for node in nodes:
        try:
            with publisher_session(spec, node) as session:
                try:
                    work(node, session)
                except ConnectionClosed as error:
                    raise ToolError(str(error)) from None
        except GenError as error:
            missed.append((node, error))
            continue
        reached.append(node)
    if not reached:
        errors = [error for _, error in missed]
        if len({(type(error), error.message) for error in errors}) == 1:
            raise errors[0]
        raise ToolError("no broker node was reached: " +
                        "; ".join(f"{node.label}: {error.message}" for node, error in missed),
                        hint=f"start the nodes (gen broker up {spec.path}), or say where one is with "
                             "--broker HOST:PORT")
    return NodeReach(tuple(reached), tuple((node, error.message) for node, error in missed))


def publish_announcements(spec: Spec, announcements: dict[str, Announcement | None],
                          broker: Address | None = None, *, nodes: Sequence[BrokerNode] | None = None,
                          stage: dict[str, bytes] | None = None, out_dir: Path | None = None) -> NodeReach:
    """Each device's announcement, retained at QoS 1 on its OTA topic, on every node (`nodes`, default
    broker_nodes(spec.broker, broker)): a cluster keeps retained messages per node. None clears it (an empty retained
    message, on every node too). With `stage` (device id -> image) and `out_dir`, each image is staged once a
    broker has taken gen's OTA identity, just before its first announcement, and the device's older staged images
    are pruned once every node was tried. A node that cannot be reached, or closes the connection, is in the
    result's `missed`."""
    staged: set[str] = set()

    def announce(node: BrokerNode, session: MqttSession) -> None:
        for device_id, announced in announcements.items():
            device = spec.device(device_id)
            assert device.ota is not None
            image = (stage or {}).get(device_id)
            if image is not None and out_dir is not None and device_id not in staged:
                stage_image(out_dir, device, image)
                staged.add(device_id)
            try:
                session.publish(device.ota.topic, announced.payload() if announced else b"", qos=OTA_QOS,
                                retain=True)
            except ConnectionClosed as error:
                raise ConnectionClosed(f"the broker closed the connection while announcing to {device_id} ({error}); "
                                       f"check that its rules let {OTA_IDENTITY} write {device.ota.topic}") from None

    reach = on_each_node(spec, tuple(nodes) if nodes is not None else broker_nodes(spec.broker, broker), announce)
    for device_id, announced in announcements.items():
        if device_id in staged and out_dir is not None and announced is not None:
            prune_staged(out_dir, spec.device(device_id), announced.sha256)
    return reach
