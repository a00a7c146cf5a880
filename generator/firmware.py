"""Firmware: the PlatformIO project of one device, Arduino (PubSubClient + WiFiClientSecure) or ESP-IDF (esp-mqtt).

`render_firmware(device, credentials)` is a pure function from the spec's device and its credentials to files.
Templates (`templates/<flavour>/<path>.j2` renders `<path>`) read like the files they make; every value that
comes from a user reaches them already escaped by `generator.c_literals`. Sizes, names and flags are decided here.

With `secrets: nvs` nothing device-specific enters the generated files (the id, topics and secrets are read from
the device's NVS partition at boot, see `generator.nvs_image`), so devices of a target whose other settings
match get byte-identical projects and one app image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.c_literals import c_comment_text, c_string_literal, c_string_literal_lines
from generator.credentials import ClientCredentials
from generator.errors import UserError
from generator.nvs_image import (
    KEY_CA_PEM,
    KEY_CERT_PEM,
    KEY_DEVICE_ID,
    KEY_KEY_PEM,
    KEY_MQTT_PASSWORD,
    KEY_STATUS_TOPIC,
    KEY_WIFI_PASSWORD,
    KEY_WIFI_SSID,
    NVS_NAMESPACE,
    NVS_PARTITION_OFFSET,
    NVS_PARTITION_SIZES,
    NVS_PASSWORD_CAPACITY,
    NVS_TOPIC_CAPACITY,
    nvs_partition_size,
    publish_topic_key,
    render_nvs_image,
    subscribe_filter_key,
)
from generator.rendering import render_template
from generator.spec.model import Device

# render_nvs_image and the partition constants are the firmware's other half; importable from here as well.
__all__ = [
    "FirmwareProject", "render_firmware", "render_nvs_image", "pubsubclient_buffer_size", "mqtt_buffer_size",
    "NVS_PARTITION_OFFSET", "NVS_PARTITION_SIZES", "nvs_partition_size", "USER_OWNED_FILES",
]

# Files the user owns: created once, never overwritten.
USER_OWNED_FILES = {"arduino": ("src/app.cpp",), "espidf": ("src/app.c",)}
# Files holding secrets (embed mode): the writer gives them mode 0600.
SECRET_FILES = ("src/credentials.h",)

MAX_DEVICE_ID = 23                     # MQTT 3.1.1 client id limit (checked by the spec rules)
WILDCARD_TOPIC_ALLOWANCE = 128         # bytes a '+'/'#' may add to a received topic beyond the filter's text
PEM_CAPACITY = 16384                   # largest PEM read from NVS (a long chain or an RSA-4096 key fits)

# Timing, in one place for both flavours.
TLS_HANDSHAKE_TIMEOUT_S = 15
MQTT_SOCKET_TIMEOUT_S = 10
MQTT_NETWORK_TIMEOUT_MS = 10_000
TIME_SYNC_WAIT_MS = 10_000
WIFI_ASSOCIATE_TIMEOUT_MS = 15_000
WIFI_RETRY_FIRST_MS, WIFI_RETRY_CAP_MS = 1_000, 60_000
MQTT_RETRY_FIRST_MS, MQTT_RETRY_CAP_MS = 1_000, 120_000
LOOP_PERIOD_MS = 50

# PubSubClient's buffer holds a whole packet: its 5-byte fixed-header reserve, then the rest.
_MQTT_HEADER = 5
_CONNECT_VARIABLE_HEADER = 10          # protocol name "MQTT" (6), level (1), flags (1), keepalive (2)


@dataclass(frozen=True)
class FirmwareProject:
    generated: dict[str, bytes]        # regenerated every run (byte-identical for the same inputs)
    user_owned: dict[str, bytes]       # created once, never overwritten (src/app.cpp, src/app.c)
    env_name: str                      # the [env:...] of the project's platformio.ini (= target name)
    secret_files: frozenset[str] = field(default_factory=frozenset)  # paths in `generated` to write 0600


def pubsubclient_buffer_size(*, client_id: int, username: int, password: int, will_topic: int, will_message: int,
                             publishes: list[tuple[int, int]], receives: list[tuple[int, int]],
                             filters: list[int]) -> int:
    """The smallest PubSubClient buffer that holds every packet the device sends or receives: CONNECT with its
    will and credentials, each publish (topic, payload), each received publish (topic, payload, with a packet
    id for QoS 1) and each SUBSCRIBE. Lengths in bytes."""
    connect = (_MQTT_HEADER + _CONNECT_VARIABLE_HEADER + 2 + client_id + 2 + will_topic + 2 + will_message
               + (2 + username if username else 0) + (2 + password if password else 0))
    sizes = [connect]
    sizes += [_MQTT_HEADER + 2 + topic + payload for topic, payload in publishes]
    sizes += [_MQTT_HEADER + 2 + topic + 2 + payload for topic, payload in receives]
    sizes += [_MQTT_HEADER + 2 + 2 + topic_filter + 1 for topic_filter in filters]
    return max(sizes)


def _check_constant_names(device: Device) -> None:
    seen: dict[str, str] = {}
    for name in [p.name for p in device.publish] + [s.name for s in device.subscribe]:
        other = seen.get(name.upper())
        if other is not None and other != name:
            raise UserError(f"device {device.id}: topic names {other!r} and {name!r} differ only in case; the "
                            "firmware names constants after them in upper case",
                            hint="rename one of them")
        seen[name.upper()] = name


def _received_topic_capacity(topic_filter_length: int, has_wildcard: bool) -> int:
    return topic_filter_length + (WILDCARD_TOPIC_ALLOWANCE if has_wildcard else 0)


def _topic_length(device: Device, topic: str) -> int:
    """Bytes a topic takes in the firmware: its own length, or the NVS capacity when it is read from NVS."""
    return NVS_TOPIC_CAPACITY if device.secrets == "nvs" else len(topic.encode())


def _receive_topic_capacities(device: Device) -> list[int]:
    return [_received_topic_capacity(_topic_length(device, s.filter), "+" in s.filter or "#" in s.filter)
            for s in device.subscribe]


def mqtt_buffer_size(device: Device, *, password_length: int) -> int:
    """The device's MQTT buffer: large enough for every packet it sends or receives (`pubsubclient_buffer_size`),
    so also the largest MQTT packet it exchanges with the broker (the broker's max_packet_size asks this).
    `password_length`: bytes of its MQTT password (0 without one)."""
    nvs = device.secrets == "nvs"
    id_length = MAX_DEVICE_ID if nvs else len(device.id.encode())
    return pubsubclient_buffer_size(
        client_id=id_length,
        username=id_length if device.uses_password else 0,
        password=password_length if device.uses_password else 0,
        will_topic=_topic_length(device, device.status.topic), will_message=len(device.status.offline.encode()),
        publishes=[(_topic_length(device, device.status.topic), len(device.status.online.encode()))]
        + [(_topic_length(device, p.topic), p.max_payload) for p in device.publish],
        receives=[(capacity, s.max_payload) for capacity, s in zip(_receive_topic_capacities(device),
                                                                    device.subscribe)],
        filters=[_topic_length(device, s.filter) for s in device.subscribe],
    )


def _template_values(device: Device, credentials: ClientCredentials, spec_name: str) -> dict:
    nvs = device.secrets == "nvs"
    flavour = device.framework
    _check_constant_names(device)
    if not nvs and device.uses_client_cert and (credentials.cert_pem is None or credentials.key_pem is None):
        raise UserError(f"device {device.id} uses auth {device.auth!r} but has no client certificate and key",
                        hint="run `gen generate` so the PKI issues them")
    if not nvs and device.uses_password and credentials.password is None:
        raise UserError(f"device {device.id} uses auth {device.auth!r} but has no MQTT password",
                        hint="run `gen generate` so the PKI creates one")

    publishes = []
    for index, p in enumerate(device.publish):
        upper = p.name.upper()
        publishes.append({
            "name": p.name, "index_name": f"PUBLISH_{upper}", "topic_constant": f"PUBLISH_{upper}_TOPIC",
            "topic": c_string_literal(p.topic), "qos": p.qos, "retain": p.retain,
            "retain_literal": "true" if p.retain else "false", "retain_int": int(p.retain),
            "interval_s": p.interval, "interval_ms": p.interval * 1000, "interval_constant": f"{upper}_INTERVAL_MS",
            "max_payload": p.max_payload, "max_payload_constant": f"{upper}_MAX_PAYLOAD",
            "nvs_key": f"NVS_KEY_PUBLISH_{index}", "nvs_key_literal": c_string_literal(publish_topic_key(index)),
        })
    subscribes = []
    for index, s in enumerate(device.subscribe):
        upper = s.name.upper()
        subscribes.append({
            "name": s.name, "index_name": f"SUBSCRIBE_{upper}", "filter_constant": f"SUBSCRIBE_{upper}_FILTER",
            "filter": c_string_literal(s.filter), "qos": s.qos,
            "max_payload": s.max_payload, "max_payload_constant": f"{upper}_MAX_PAYLOAD",
            "nvs_key": f"NVS_KEY_SUBSCRIBE_{index}", "nvs_key_literal": c_string_literal(subscribe_filter_key(index)),
        })
    scheduled = [p for p in publishes if p["interval_s"] > 0]
    ack = next((p.name for p in device.publish if p.name == "ack"), None)

    receive_topics = _receive_topic_capacities(device)
    password_length = 0
    if device.uses_password:
        password_length = NVS_PASSWORD_CAPACITY if nvs else len(credentials.password.encode())
    buffer_size = mqtt_buffer_size(device, password_length=password_length)
    if flavour == "arduino" and buffer_size > 0xFFFF:
        raise UserError(f"device {device.id} needs an MQTT buffer of {buffer_size} bytes; PubSubClient's is at most "
                        "65535", hint="lower max_payload or shorten topics")

    secrets_word = "secrets in NVS" if nvs else "secrets embedded"
    library = "PubSubClient" if flavour == "arduino" else "esp-mqtt"
    source = c_comment_text(spec_name)
    generated_line = f"Generated by gen from {source}. Do not edit: change the spec and run `gen generate` again."
    ntp = list(device.ntp[:3])
    return {
        "nvs": nvs,
        "header": f"// {generated_line}",
        "ini_header": f"; {generated_line}",
        "hash_header": f"# {generated_line}",   # CMake, Python, partition CSV, sdkconfig
        "flavour_summary": c_comment_text(f"{flavour}, {library}, {device.auth}, {secrets_word}"),
        "env_name": device.target.name,
        "project_name": "firmware",
        "chip": device.chip,
        "options": [(key, _ini_value(value)) for key, value in device.target.options],
        "uses_client_cert": device.uses_client_cert,
        "uses_password": device.uses_password,
        "device_id": c_string_literal(device.id),
        "wifi_ssid": c_string_literal(device.wifi.ssid),
        "wifi_password": c_string_literal(device.wifi.password),
        "mqtt_password": c_string_literal(credentials.password or ""),
        "ca_pem": c_string_literal_lines(credentials.ca_pem),
        "cert_pem": c_string_literal_lines(credentials.cert_pem or b""),
        "key_pem": c_string_literal_lines(credentials.key_pem or b""),
        "broker_host": c_string_literal(device.broker.host),
        "broker_port": device.broker.port,
        "keepalive": device.keepalive,
        "socket_timeout_s": MQTT_SOCKET_TIMEOUT_S,
        "handshake_timeout_s": TLS_HANDSHAKE_TIMEOUT_S,
        "network_timeout_ms": MQTT_NETWORK_TIMEOUT_MS,
        "buffer_size": buffer_size,
        "inbound_topic_capacity": max(receive_topics, default=0),
        "inbound_payload_capacity": max((s.max_payload for s in device.subscribe), default=0),
        "outbound_payload_capacity": max((p["max_payload"] for p in scheduled), default=0),
        "status_topic": c_string_literal(device.status.topic),
        "status_online": c_string_literal(device.status.online),
        "status_offline": c_string_literal(device.status.offline),
        "publishes": publishes,
        "subscribes": subscribes,
        "scheduled": scheduled,
        "ack": ack,
        "command": subscribes[0] if subscribes else None,
        "ntp_servers": [c_string_literal(server) for server in ntp] + ["nullptr"] * (3 - len(ntp)),
        "ntp": [(f"NTP_SERVER_{i + 1}", c_string_literal(server)) for i, server in enumerate(ntp)],
        "ntp_constants": [f"NTP_SERVER_{i + 1}" for i in range(len(ntp))],
        "time_sync_wait_ms": TIME_SYNC_WAIT_MS,
        "wifi_associate_timeout_ms": WIFI_ASSOCIATE_TIMEOUT_MS,
        "wifi_retry_first_ms": WIFI_RETRY_FIRST_MS,
        "wifi_retry_cap_ms": WIFI_RETRY_CAP_MS,
        "mqtt_retry_first_ms": MQTT_RETRY_FIRST_MS,
        "mqtt_retry_cap_ms": MQTT_RETRY_CAP_MS,
        "loop_period_ms": LOOP_PERIOD_MS,
        "nvs_namespace": c_string_literal(NVS_NAMESPACE),
        "nvs_offset": f"{NVS_PARTITION_OFFSET:#x}",
        "nvs_size": f"{nvs_partition_size(flavour):#x}",
        "device_id_capacity": MAX_DEVICE_ID,
        "topic_capacity": NVS_TOPIC_CAPACITY,
        "mqtt_password_capacity": NVS_PASSWORD_CAPACITY,
        "pem_capacity": PEM_CAPACITY,
        "nvs_keys": [{"constant": constant, "literal": c_string_literal(key)} for constant, key in (
            ("NVS_KEY_DEVICE_ID", KEY_DEVICE_ID), ("NVS_KEY_WIFI_SSID", KEY_WIFI_SSID),
            ("NVS_KEY_WIFI_PASSWORD", KEY_WIFI_PASSWORD))
            + ((("NVS_KEY_MQTT_PASSWORD", KEY_MQTT_PASSWORD),) if device.uses_password else ())
            + (("NVS_KEY_CA_PEM", KEY_CA_PEM),)
            + ((("NVS_KEY_CERT_PEM", KEY_CERT_PEM), ("NVS_KEY_KEY_PEM", KEY_KEY_PEM)) if device.uses_client_cert else ())
            + (("NVS_KEY_STATUS_TOPIC", KEY_STATUS_TOPIC),)],
    }


def _ini_value(text: str) -> str:
    """A catalogue option as platformio.ini text: extra lines of a multi-line value are indented."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return "\n".join([""] + [f"    {line}" for line in lines if line.strip()])


_GENERATED = {
    "arduino": ("platformio.ini", "partitions.csv", "src/main.cpp", "src/config.h", "src/app.h", "src/topic_filter.h",
                "test/test_device.py"),
    "espidf": ("platformio.ini", "partitions.csv", "sdkconfig.defaults", "CMakeLists.txt", "src/CMakeLists.txt",
               "src/main.c", "src/config.h", "src/app.h", "src/topic_filter.h", "test/test_device.py"),
}


def render_firmware(device: Device, credentials: ClientCredentials, *, spec_name: str = "the device spec"
                    ) -> FirmwareProject:
    """The device's PlatformIO project. `spec_name` (e.g. "device.yaml") is named in every generated file's
    header; keep it the same for every device of a fleet so their `secrets: nvs` projects stay identical."""
    flavour = device.framework
    values = _template_values(device, credentials, spec_name)
    paths = list(_GENERATED[flavour])
    if device.secrets == "embed":
        paths.append("src/credentials.h")
    generated = {path: _render(flavour, path, values) for path in paths}
    user_owned = {path: _render(flavour, path, values) for path in USER_OWNED_FILES[flavour]}
    secret_files = frozenset(path for path in SECRET_FILES if path in generated)
    return FirmwareProject(generated=generated, user_owned=user_owned, env_name=device.target.name,
                           secret_files=secret_files)


def _render(flavour: str, path: str, values: dict) -> bytes:
    return render_template(f"{flavour}/{path}.j2", **values).encode("utf-8")
