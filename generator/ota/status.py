"""`gen ota status`: what each device last said about itself, from the retained messages on its status topic
(online/offline, the birth message and the last will) and its firmware topic (the version it runs, from which slot,
and the state of its last update), read as gen's OTA identity from every broker node (a RabbitMQ cluster keeps
retained messages per node: merge_readings says which node's are the newest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from generator.core.errors import ToolError
from generator.core.mqtt_wire import ConnectionClosed, MqttSession
from generator.ota.announce import Address, NodeReach, on_each_node
from generator.ota.nodes import BrokerNode, broker_nodes
from generator.spec.device_limits import OTA_QOS
from generator.spec.model import Device, Spec


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


@dataclass(frozen=True)
class NodeReading:
    """What one broker node holds retained for one device: its status and its firmware report (None: nothing)."""

    node: str
    status: bytes | None
    report: bytes | None


def _link(device: Device, status: bytes | None) -> str:
    if status is None:
        return "never seen"
    text = status.decode("utf-8", "replace")
    return "online" if text == device.status.online else "offline" if text == device.status.offline else text


def merge_readings(device: Device, readings: Sequence[NodeReading]) -> DeviceStatus:
    """One device's status from what each node holds (one node on Mosquitto; every node of a RabbitMQ cluster,
    which keeps retained messages per node). A retained message carries no time, so the newest is found another
    way: the device publishes its status and its firmware report on every connect, to the node it is on, so the one
    node that says "online" holds its newest pair; the nodes it left keep older values ("offline" from its Last
    Will there). When the nodes agree, that is the answer. Otherwise, when none or several say "online" (a node
    that crashed fires no Last Will and keeps a stale "online"), the link says that the nodes disagree and what
    each holds, and no report is shown as the device's."""
    held = [reading for reading in readings if reading.status is not None or reading.report is not None]
    if not held:
        return DeviceStatus(device.id, "never seen", None, None, None, None)
    online = [reading for reading in held if _link(device, reading.status) == "online"]
    if len({(reading.status, reading.report) for reading in held}) == 1:
        chosen = held[0]
    elif len(online) == 1:
        chosen = online[0]
    else:
        link = "unknown: the nodes disagree (" + ", ".join(
            f"{reading.node}: {_link(device, reading.status)}" for reading in held) + ")"
        return DeviceStatus(device.id, link, None, None, None, None)
    report = read_report(chosen.report or b"")
    return DeviceStatus(device.id, _link(device, chosen.status), report.get("version"), report.get("slot"),
                        report.get("state"), report.get("detail"))


def node_statuses(spec: Spec, nodes: Sequence[BrokerNode]) -> tuple[list[DeviceStatus], NodeReach]:
    """Each OTA device's status merged from every node that could be read, and which nodes were read."""
    devices = [device for device in spec.devices if device.ota is not None]
    filters = []
    for device in devices:
        assert device.ota is not None
        filters += [(device.status.topic, OTA_QOS), (device.ota.firmware_topic, OTA_QOS)]
    held: dict[BrokerNode, dict[str, bytes]] = {}

    def read(node: BrokerNode, session: MqttSession) -> None:
        try:
            session.subscribe(filters)
            session.ping()               # the retained messages come before the broker's answer to this
        except ConnectionClosed as error:
            raise ConnectionClosed(f"the broker closed the connection while reading the devices' reports: "
                                   f"{error}") from None
        held[node] = {message.topic: message.payload for message in session.received}

    reach = on_each_node(spec, nodes, read)
    statuses = []
    for device in devices:
        assert device.ota is not None
        statuses.append(merge_readings(device, [
            NodeReading(node.label, last.get(device.status.topic), last.get(device.ota.firmware_topic))
            for node, last in held.items()]))
    return statuses, reach


def collect_status(spec: Spec, broker: Address | None = None) -> list[DeviceStatus]:
    """Each OTA device's status, read from every node (broker_nodes); a node that cannot be read is a ToolError."""
    statuses, reach = node_statuses(spec, broker_nodes(spec.broker, broker))
    if reach.missed:
        raise ToolError("could not read " + "; ".join(f"{node.label}: {why}" for node, why in reach.missed))
    return statuses
