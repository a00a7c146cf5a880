"""`gen ota status`: what each device last said about itself, from the retained messages on its status topic
(online/offline, the birth message and the last will) and its firmware topic (the version it runs, from which slot,
and the state of its last update), read as gen's OTA identity."""

from __future__ import annotations

import json
from dataclasses import dataclass

from generator.core.errors import UserError
from generator.core.mqtt_wire import ConnectionClosed
from generator.ota.announce import Address, publisher_session
from generator.spec.device_limits import OTA_QOS
from generator.spec.model import Spec


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    link: str                    # online, offline, or "never seen" (no retained status)
    version: str | None          # the version it runs, as its last report says
    slot: str | None
    state: str | None            # running, confirmed, downloading, refused, installed, rolled_back
    detail: str | None


def read_report(payload: bytes) -> dict[str, str]:
    """A firmware report ({"version", "slot", "state", "detail"}), or {} when it is not one."""
    try:
        data = json.loads(payload)
    except ValueError:
        return {}
    return {key: str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def collect_status(spec: Spec, broker: Address | None = None) -> list[DeviceStatus]:
    devices = [device for device in spec.devices if device.ota is not None]
    with publisher_session(spec, broker) as session:
        filters = []
        for device in devices:
            assert device.ota is not None
            filters += [(device.status.topic, OTA_QOS), (device.ota.firmware_topic, OTA_QOS)]
        try:
            session.subscribe(filters)
            session.ping()               # the retained messages come before the broker's answer to this
        except ConnectionClosed as error:
            raise UserError(f"the broker closed the connection while reading the devices' reports: {error}") from None
        last = {message.topic: message.payload for message in session.received}
    statuses = []
    for device in devices:
        assert device.ota is not None
        status = last.get(device.status.topic)
        if status is None:
            link = "never seen"
        elif status.decode("utf-8", "replace") == device.status.online:
            link = "online"
        elif status.decode("utf-8", "replace") == device.status.offline:
            link = "offline"
        else:
            link = status.decode("utf-8", "replace")
        report = read_report(last.get(device.ota.firmware_topic, b""))
        statuses.append(DeviceStatus(device.id, link, report.get("version"), report.get("slot"), report.get("state"),
                                     report.get("detail")))
    return statuses
