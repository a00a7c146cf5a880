"""What the generated firmware can carry: its MQTT client's QoS levels, its packet buffer, the fixed-size buffers of
a shared `secrets: nvs` image, its SNTP client's servers. The one owner of these rules: `gen check` (the spec
resolver) asks `device_problems`, and the renderers (firmware, NVS image) size their buffers with the same
functions, so the two cannot disagree. Each limit is kept beside the framework fact it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from generator.spec.contract import MQTT_PASSWORD_LENGTH
from generator.spec.firmware_version import VERSION_MAX
from generator.spec.provisioning_protocol import (
    BOOTSTRAP_USER_SUFFIX,
    REQUEST_MAX_BYTES,
    RESPONSE_MAX_BYTES,
    request_topic,
    response_topic,
)

if TYPE_CHECKING:  # the spec's resolver imports this module: the model is only named here, not used
    from generator.spec.model import Device

# The MQTT clients of the two flavours: PubSubClient 2.8 publishes at QoS 0 only and subscribes at 0 or 1
# (PubSubClient.cpp: publish() sends QoS 0; subscribe() returns false for qos > 1); esp-mqtt does all three.
PUBLISH_QOS = {"arduino": (0,), "espidf": (0, 1, 2)}
SUBSCRIBE_QOS = {"arduino": (0, 1), "espidf": (0, 1, 2)}
CLIENT_LIBRARY = {"arduino": "PubSubClient (the Arduino MQTT client)", "espidf": "esp-mqtt"}

PUBSUBCLIENT_MAX_BUFFER = 65535        # setBufferSize(uint16_t)
MAX_CLIENT_ID = 23                     # MQTT 3.1.1: brokers must accept client ids of up to 23 bytes
WILDCARD_TOPIC_ALLOWANCE = 128         # bytes a '+'/'#' may add to a received topic beyond the filter's text
# With `secrets: nvs` one image serves many devices, so the values that differ between them (read from NVS at boot)
# get fixed-size buffers:
NVS_TOPIC_CAPACITY = 192               # bytes of one expanded topic or filter, without the NUL
NVS_PASSWORD_CAPACITY = 128            # bytes of the MQTT password
PEM_CAPACITY = 16384                   # largest PEM read from NVS (a long chain or an RSA-4096 key fits)

# Updates over the air (generator.ota): the announcement a device receives on its OTA topic (JSON: a version of 31
# characters, a size, a 64-digit sha256, a URL of up to 360 bytes for a 253-byte broker name, the target, the
# 63-character project and, for a deliberate downgrade, `"downgrade":"<not after>:<from version>:<base64 of an
# RSA-3072 signature>"`, generator.pki.ota_signing) and the report it publishes on its firmware topic (version, slot,
# state, a short detail).
OTA_DOWNGRADE_SIGNATURE_TEXT = 4 * ((3072 // 8 + 2) // 3)   # 512 characters
OTA_DOWNGRADE_NOT_AFTER_DIGITS = 10    # Unix seconds, UTC: 10 digits until the year 2286
OTA_DOWNGRADE_TEXT = OTA_DOWNGRADE_NOT_AFTER_DIGITS + 1 + VERSION_MAX + 1 + OTA_DOWNGRADE_SIGNATURE_TEXT
OTA_DOWNGRADE_CAPACITY = OTA_DOWNGRADE_TEXT + 1                # gen_link's buffer for it, NUL included
OTA_ANNOUNCEMENT_CAPACITY = 768 + len(',"downgrade":""') + OTA_DOWNGRADE_TEXT
FIRMWARE_REPORT_CAPACITY = 256
LOG_LINE_CAPACITY = 256                # bytes of one published log line (a longer one is cut; serial shows it all)
OTA_QOS = 1                            # announcements are retained QoS 1: a device that was offline still gets one

# PubSubClient's buffer holds a whole packet: its 5-byte fixed-header reserve, then the rest.
_MQTT_HEADER = 5
_CONNECT_VARIABLE_HEADER = 10          # protocol name "MQTT" (6), level (1), flags (1), keepalive (2)


@dataclass(frozen=True)
class NtpServerLimit:
    count: int          # most NTP servers the flavour's SNTP client takes
    reason: str         # why, in the words `gen check` shows


NTP_SERVER_LIMITS = {
    # configTime() takes three names (cores/esp32/esp32-hal-time.c) and lwIP ignores a server index at or past
    # SNTP_MAX_SERVERS (esp-lwip src/apps/sntp/sntp.c sntp_setservername); the 2.0.17 core's prebuilt sdkconfig
    # has CONFIG_LWIP_SNTP_MAX_SERVERS=3 (esp32-arduino-lib-builder release/v4.4 configs/defconfig.common).
    "arduino": NtpServerLimit(3, "Arduino-ESP32's configTime() takes 3 servers"),
    # ESP-IDF's components/lwip/Kconfig: LWIP_SNTP_MAX_SERVERS "range 1 16"; sdkconfig.defaults sets it to the
    # number of servers the spec lists (esp_sntp_config_t.servers[] is sized by it).
    "espidf": NtpServerLimit(16, "ESP-IDF's CONFIG_LWIP_SNTP_MAX_SERVERS is at most 16"),
}


def ntp_server_limit(framework: str) -> NtpServerLimit:
    return NTP_SERVER_LIMITS[framework]


@dataclass(frozen=True)
class LimitProblem:
    """A device setting the firmware cannot carry. `where` is relative to the device: ("publish", 0, "qos"),
    ("status", "topic"), or () for the device as a whole."""

    where: tuple
    message: str
    hint: str


def topic_length(device: Device, topic: str) -> int:
    """The bytes the firmware reserves for a topic: its own length, or with `secrets: nvs` (one image for many
    devices, topics read from NVS) the shared capacity."""
    return NVS_TOPIC_CAPACITY if device.secrets == "nvs" else len(topic.encode())


def received_topic_capacity(device: Device, topic_filter: str) -> int:
    wildcard = "+" in topic_filter or "#" in topic_filter
    return topic_length(device, topic_filter) + (WILDCARD_TOPIC_ALLOWANCE if wildcard else 0)


def mqtt_buffer_size(device: Device, *, password_length: int = MQTT_PASSWORD_LENGTH) -> int:
    """The smallest MQTT packet buffer that holds every packet the device sends or receives: CONNECT with its will
    and credentials, each publish (the birth message included), each received publish (with a packet id for QoS
    1) and each SUBSCRIBE. `password_length` is the real password's at render time; `gen check` runs before the
    PKI made one and uses the length the PKI makes."""
    nvs = device.secrets == "nvs"
    identity = MAX_CLIENT_ID if nvs else len(device.id.encode())
    username = identity if device.uses_password else 0
    password = (NVS_PASSWORD_CAPACITY if nvs else password_length) if device.uses_password else 0
    status_topic = topic_length(device, device.status.topic)
    connect = (_MQTT_HEADER + _CONNECT_VARIABLE_HEADER + 2 + identity + 2 + status_topic
               + 2 + len(device.status.offline.encode())
               + (2 + username if username else 0) + (2 + password if password else 0))
    sizes = [connect, _MQTT_HEADER + 2 + status_topic + len(device.status.online.encode())]
    sizes += [_MQTT_HEADER + 2 + topic_length(device, p.topic) + p.max_payload for p in device.publish]
    sizes += [_MQTT_HEADER + 2 + received_topic_capacity(device, s.filter) + 2 + s.max_payload
              for s in device.subscribe]
    sizes += [_MQTT_HEADER + 2 + 2 + topic_length(device, s.filter) + 1 for s in device.subscribe]
    if device.makes_own_key:   # certificate requests out, answers in (QoS 1: a packet id), the bootstrap login
        for channel in ("bootstrap", "operational"):
            sizes.append(_MQTT_HEADER + 2 + len(request_topic("x" * identity, channel)) + REQUEST_MAX_BYTES)
            sizes.append(_MQTT_HEADER + 2 + len(response_topic("x" * identity, channel)) + 2 + RESPONSE_MAX_BYTES)
        sizes.append(connect + 2 + identity + len(BOOTSTRAP_USER_SUFFIX) + 2 + MQTT_PASSWORD_LENGTH)
    if device.ota is not None:
        sizes += [_MQTT_HEADER + 2 + topic_length(device, device.ota.topic) + 2 + OTA_ANNOUNCEMENT_CAPACITY,
                  _MQTT_HEADER + 2 + topic_length(device, device.ota.firmware_topic) + FIRMWARE_REPORT_CAPACITY,
                  _MQTT_HEADER + 2 + 2 + topic_length(device, device.ota.topic) + 1]
    if device.log is not None:
        sizes.append(_MQTT_HEADER + 2 + topic_length(device, device.log.topic) + LOG_LINE_CAPACITY)
    return max(sizes)


def device_problems(device: Device) -> list[LimitProblem]:
    """Every setting of `device` its firmware cannot carry."""
    problems = []
    framework = device.framework
    library = CLIENT_LIBRARY[framework]
    for index, publish in enumerate(device.publish):
        if publish.qos not in PUBLISH_QOS[framework]:
            problems.append(LimitProblem(
                ("publish", index, "qos"), f"is {publish.qos}, but {library} publishes at QoS "
                f"{_levels(PUBLISH_QOS[framework])} only",
                f"use qos: {max(PUBLISH_QOS[framework])}, or an espidf target (esp-mqtt publishes at QoS 0, 1 and 2)"))
    for index, subscribe in enumerate(device.subscribe):
        if subscribe.qos not in SUBSCRIBE_QOS[framework]:
            problems.append(LimitProblem(
                ("subscribe", index, "qos"), f"is {subscribe.qos}, but {library} subscribes at QoS "
                f"{_levels(SUBSCRIBE_QOS[framework])} only",
                f"use qos: {max(SUBSCRIBE_QOS[framework])}, or an espidf target"))
    ntp = ntp_server_limit(framework)
    if len(device.ntp) > ntp.count:
        problems.append(LimitProblem(("ntp", ntp.count), f"lists {len(device.ntp)} NTP servers; {ntp.reason}",
                                     f"keep the first {ntp.count}"))
    if device.secrets == "nvs":
        topics: list[tuple[tuple, str]] = [(("status", "topic"), device.status.topic)]
        topics += [(("publish", i, "topic"), p.topic) for i, p in enumerate(device.publish)]
        topics += [(("subscribe", i, "filter"), s.filter) for i, s in enumerate(device.subscribe)]
        if device.ota is not None:
            topics += [(("ota", "topic"), device.ota.topic), (("ota", "firmware_topic"), device.ota.firmware_topic)]
        for where, topic in topics:
            if len(topic.encode()) > NVS_TOPIC_CAPACITY:
                problems.append(LimitProblem(
                    where, f"is {len(topic.encode())} bytes; with secrets: nvs the shared firmware (one image for "
                    f"every device) holds topics of up to {NVS_TOPIC_CAPACITY} bytes",
                    "shorten the topic, or use secrets: embed"))
    buffer = mqtt_buffer_size(device)
    if framework == "arduino" and buffer > PUBSUBCLIENT_MAX_BUFFER:
        problems.append(LimitProblem(
            (), f"needs an MQTT buffer of {buffer:,} bytes for its largest packet; PubSubClient's is at most "
            f"{PUBSUBCLIENT_MAX_BUFFER:,}" + (" (with secrets: nvs every topic is reserved "
                                             f"{NVS_TOPIC_CAPACITY} bytes)" if device.secrets == "nvs" else ""),
            "lower max_payload or shorten topics"))
    return problems


def _levels(levels: tuple[int, ...]) -> str:
    return " or ".join(str(level) for level in levels)
