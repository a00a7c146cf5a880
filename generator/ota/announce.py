"""`gen ota publish`: an image checked, staged where `gen ota serve` serves it, and announced to the device on its OTA
topic (retained, QoS 1: a device that is offline gets it when it comes back).

    {"version": "1.3.0", "size": 1232896, "sha256": "<64 hex digits>",
     "url": "https://<broker.host>:<ota.port>/<device id>/<sha256>.bin", "target": "esp32-espidf", "project": "..."}

No signature travels in the announcement: it is inside the image, and the device checks it. Before announcing, the
image must be one the device will take: an app image for its chip, signed with the project's key, small enough for
its slot, and (ESP-IDF, whose images carry the version) of the announced version. The announcement is published as
gen's own OTA identity (OTA_IDENTITY), never your backend's, so a backend of yours stays connected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from generator.broker.trust import broker_trust
from generator.core.errors import UserError
from generator.core.files import PRIVATE_DIR_MODE, PUBLIC_MODE, SECRET_MODE, ensure_dir, write_atomic
from generator.core.mqtt_wire import ConnectionClosed, MqttSession
from generator.doctor.probes import ClientIdentity, open_tls
from generator.firmware.limits import OTA_ANNOUNCEMENT_CAPACITY, OTA_QOS
from generator.ota.image import CHIP_IDS, ImageError, read_image
from generator.ota.signing import SigningKey, signature_problem
from generator.output.layout import ota_image
from generator.pki.layout import PkiLayout
from generator.pki.spec_identities import open_spec_pki
from generator.spec.model import OTA_IDENTITY, Device, Spec

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Announcement:
    version: str
    size: int
    sha256: str
    url: str
    target: str
    project: str

    def payload(self) -> bytes:
        text = json.dumps({"version": self.version, "size": self.size, "sha256": self.sha256, "url": self.url,
                           "target": self.target, "project": self.project}, separators=(",", ":")).encode()
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
        raise UserError(f"cannot read {image}: {error.strerror}", hint="give the path of a built firmware.bin") from None
    try:
        parsed = read_image(data)
    except ImageError as error:
        raise UserError(f"{image} is not an app image: {error}", hint="give the firmware.bin `gen build` made") from None
    if parsed.chip_id != CHIP_IDS[device.chip]:
        raise UserError(f"{image} is built for {parsed.chip}, but device {device.id} is {device.chip} "
                        f"({device.target.name})", hint="announce an image built for that device's target")
    problem = signature_problem(image, key)
    if problem is not None:
        raise UserError(f"{image} would be refused by {device.id}: {problem}",
                        hint="announce the firmware.bin of `gen build`, which signs it with pki/private/ota-signing-key.pem; "
                             "for an unsigned image built elsewhere (CI), add --sign to sign it here")
    if slot is not None and len(data) > slot:
        raise UserError(f"{image} is {len(data):,} bytes; {device.id}'s app slot holds {slot:,}",
                        hint="make the firmware smaller")
    if device.framework == "espidf" and parsed.version != version:
        raise UserError(f"{image} is version {parsed.version!r} (its esp_app_desc_t), not {version!r}",
                        hint="give the version the image was built as (--version), or build the spec's version")
    return data


def stage_image(out_dir: Path, device: Device, data: bytes) -> str:
    """OUT/ota/<id>/<sha256>.bin, what `gen ota serve` serves (private when the image holds the device's key)."""
    sha256 = hashlib.sha256(data).hexdigest()
    path = Path(out_dir) / ota_image(device.id, sha256)
    ensure_dir(path.parent, PRIVATE_DIR_MODE)
    write_atomic(path, data, mode=SECRET_MODE if device.secrets == "embed" else PUBLIC_MODE)
    return sha256


def announcement(device: Device, data: bytes, version: str) -> Announcement:
    assert device.ota is not None
    sha256 = hashlib.sha256(data).hexdigest()
    return Announcement(version=version, size=len(data), sha256=sha256, url=image_url(device, sha256),
                        target=device.target.name, project=device.ota.project)


# ---------------------------------------------------------------------------------------------- MQTT


Address = tuple[str, int]


def publisher_identity(spec: Spec) -> tuple[ClientIdentity, str | None]:
    """What gen's OTA identity presents to the broker: the CA the devices trust for it, its certificate and key
    (pki/clients/, pki/private/clients/), and its password when the auth mode asks for one."""
    layout = PkiLayout(spec.pki.dir)
    trust = broker_trust(spec)
    cert, key = layout.cert_path("client", OTA_IDENTITY), layout.key_path("client", OTA_IDENTITY)
    try:
        ca = trust.ca_pem if trust is not None else layout.ca_cert.read_bytes()
        identity = ClientIdentity(ca_pem=ca, cert_pem=cert.read_bytes(), key_pem=key.read_bytes())
    except OSError as error:
        raise UserError(f"the PKI has no certificate for {OTA_IDENTITY} ({error.filename})",
                        hint="run `gen generate SPEC`, which issues it") from None
    password = None
    if any(device.uses_password for device in spec.devices):
        password = open_spec_pki(spec, create=False).existing_password(OTA_IDENTITY)
    return identity, password


@contextlib.contextmanager
def publisher_session(spec: Spec, broker: Address | None = None) -> Iterator[MqttSession]:
    """An MQTT session as OTA_IDENTITY to the broker (spec's broker.host:port, or `broker`, verified as broker.host)."""
    address = broker or (spec.broker.host, spec.broker.port)
    identity, password = publisher_identity(spec)
    try:
        sock = open_tls(address, spec.broker.host, identity, timeout=CONNECT_TIMEOUT_S)
    except ssl.SSLError as error:
        raise UserError(f"the broker at {address[0]}:{address[1]} refused gen's OTA identity: {error}",
                        hint=f"is its config the one `gen generate` wrote (with user {OTA_IDENTITY})? then "
                             "restart it (gen broker up SPEC)") from None
    except OSError as error:
        raise UserError(f"cannot reach the broker at {address[0]}:{address[1]}: {error.strerror or error}",
                        hint="start it (gen broker up SPEC), or say where it is with --broker HOST:PORT") from None
    with contextlib.closing(sock):
        session = MqttSession(sock)
        try:
            code = session.connect(OTA_IDENTITY, username=OTA_IDENTITY if password else None, password=password)
        except ConnectionClosed as error:
            raise UserError(f"the broker closed the connection of {OTA_IDENTITY}: {error}") from None
        if code != 0:
            raise UserError(f"the broker refused {OTA_IDENTITY} (CONNACK {code})",
                            hint="run `gen generate SPEC` and restart the broker with its new password file and ACL")
        try:
            yield session
        finally:
            session.disconnect()


def publish_announcements(spec: Spec, announcements: dict[str, Announcement | None],
                          broker: Address | None = None) -> None:
    """Each device's announcement, retained at QoS 1 on its OTA topic; None clears it (an empty retained message)."""
    with publisher_session(spec, broker) as session:
        for device_id, announced in announcements.items():
            device = spec.device(device_id)
            assert device.ota is not None
            try:
                session.publish(device.ota.topic, announced.payload() if announced else b"", qos=OTA_QOS, retain=True)
            except ConnectionClosed as error:
                raise UserError(f"the broker closed the connection while announcing to {device_id}: {error}",
                                hint=f"check that the ACL lets {OTA_IDENTITY} write {device.ota.topic}") from None
