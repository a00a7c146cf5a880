"""Firmware: the PlatformIO project of one device, Arduino (PubSubClient + WiFiClientSecure) or ESP-IDF (esp-mqtt).

`render_firmware(device, credentials)` is a pure function from the spec's device and its credentials to files.
The user's application code is not among them: it is the src/ folder next to the spec (every .c/.cpp/.h in it,
shared by every device, in git), with the user's own libraries in lib/ and components/ beside it; the project
compiles them in place (generator.firmware.app_layout). `render_app_starter` renders the first file of src/
(`USER_APP_SOURCE`, one per framework), which `gen generate` writes once.

gen's device runtime, gen_link (WiFi, clock, TLS, MQTT, backoff, provisioning, device key, OTA), is plain C/C++ in
`gen_link/` of the tool (`LINK_LIBRARY_DIR`), copied unchanged into each project: a PlatformIO library
(lib/gen_link/, library.json) for Arduino, an ESP-IDF component (components/gen_link/) for ESP-IDF. Only facts
are rendered: `firmware_facts(...)` decides them once, as a typed `FirmwareFacts`, and the templates
(`templates/<flavour>/<path>.j2` renders `<path>`; gen_config.h, app.h, the credentials header, platformio.ini,
sdkconfig.defaults, partitions) read them as `facts`. Every value that comes from a user reaches them already
escaped by `generator.core.c_literals`. Sizes, names and flags are decided here.

With `secrets: nvs` nothing device-specific enters the generated files (the id, topics and secrets are read from
the device's NVS partition at boot, see `generator.firmware.nvs_image`), so devices of a target whose other settings
match get byte-identical projects and one app image.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from generator.core.c_literals import c_comment_text, c_string_literal, c_string_literal_lines
from generator.core.errors import UserError
from generator.core.paths import LINK_LIBRARY_DIR, TEMPLATES_DIR
from generator.core.rendering import render_template
from generator.firmware.app_layout import APP_LIBRARIES_DIR, IDF_MAIN_COMPONENT, OTHER_STARTER, user_code
from generator.firmware.limits import (
    FIRMWARE_REPORT_CAPACITY,
    LOG_LINE_CAPACITY,
    MAX_CLIENT_ID,
    OTA_ANNOUNCEMENT_CAPACITY,
    OTA_QOS,
    NVS_PASSWORD_CAPACITY,
    NVS_TOPIC_CAPACITY,
    PEM_CAPACITY,
    mqtt_buffer_size,
    ntp_server_limit,
    received_topic_capacity,
    require_carriable,
)
from generator.firmware.nvs_image import (
    CREDENTIALS_NAMESPACE,
    CREDENTIALS_PARTITION,
    CREDENTIALS_PARTITION_OFFSET,
    CREDENTIALS_PARTITION_SIZE,
    KEY_BOOTSTRAP_PASSWORD,
    KEY_CA_PEM,
    KEY_CERT_PEM,
    KEY_DEVICE_ID,
    KEY_FIRMWARE_TOPIC,
    KEY_KEY_PEM,
    KEY_MQTT_PASSWORD,
    KEY_OTA_TOPIC,
    KEY_STATUS_TOPIC,
    KEY_WIFI_PASSWORD,
    KEY_WIFI_SSID,
    NVS_NAMESPACE,
    NVS_PARTITION_OFFSET,
    NVS_PARTITION_SIZES,
    nvs_partition_size,
    publish_topic_key,
    render_nvs_image,
    subscribe_filter_key,
    var_key,
    var_text,
)
from generator.firmware.security import SecurityFacts, nvs_offset, security_facts
from generator.ota.image import CHIP_IDS
from generator.ota.signing import key_digest
from generator.pki.credentials import ClientCredentials
from generator.provision.protocol import (
    BOOTSTRAP_USER_SUFFIX,
    REQUEST_ID_HEX_DIGITS,
    REQUEST_MAX_BYTES,
    RESPONSE_MAX_BYTES,
    request_topic,
    response_topic,
)
from generator.spec.model import LOG_LEVELS, VAR_STRING_MAX, Device

# render_nvs_image and the partition constants are the firmware's other half; importable from here as well.
__all__ = [
    "FirmwareProject", "render_firmware", "render_nvs_image", "render_app_starter", "AppLayout",
    "NVS_PARTITION_OFFSET", "NVS_PARTITION_SIZES", "nvs_partition_size", "USER_APP_SOURCE",
]

# The first file of the user's app, relative to the spec's folder: created once by `gen generate`, never overwritten.
USER_APP_SOURCE = {"arduino": "src/app.cpp", "espidf": "src/app.c"}
# The spec's folder seen from a firmware project where OUT is <spec folder>/build: OUT/devices/<id>/firmware/.
DEFAULT_APP_ROOT = "../../../.."
# Where the rendered headers go: the project's include/ (PlatformIO adds it to every library's include path) or the
# gen_config component (ESP-IDF: gen_link and the main component require it).
CONFIG_DIR = {"arduino": "include", "espidf": "components/gen_config/include"}
# The runtime library in the project, and where its sources lie in the tool (`LINK_LIBRARY_DIR`): (tool, project).
_LINK_FILES = {
    "arduino": (("arduino/library.json", "lib/gen_link/library.json"),
                ("common/gen_link.h", "lib/gen_link/src/gen_link.h"),
                ("arduino/gen_link.cpp", "lib/gen_link/src/gen_link.cpp"),
                ("arduino/ota_update.h", "lib/gen_link/src/ota_update.h"),
                ("arduino/ota_update.cpp", "lib/gen_link/src/ota_update.cpp"),
                ("arduino/ota_version_record.h", "lib/gen_link/src/ota_version_record.h"),
                ("arduino/date_checking_client.h", "lib/gen_link/src/date_checking_client.h"),
                ("arduino/log_serial.h", "lib/gen_link/src/log_serial.h"),
                ("arduino/log_serial.cpp", "lib/gen_link/src/log_serial.cpp"),
                *((f"common/{name}", f"lib/gen_link/src/{name}") for name in (
                    "ota_common.h", "version_order.h", "topic_filter.h", "device_key.h", "device_key.c",
                    "provisioning.h", "provisioning.c", "log_publish.h", "log_publish.c"))),
    "espidf": (("espidf/CMakeLists.txt", "components/gen_link/CMakeLists.txt"),
               ("common/gen_link.h", "components/gen_link/include/gen_link.h"),
               ("espidf/gen_link.c", "components/gen_link/gen_link.c"),
               ("espidf/ota_update.h", "components/gen_link/ota_update.h"),
               ("espidf/ota_update.c", "components/gen_link/ota_update.c"),
               *((f"common/{name}", f"components/gen_link/{name}") for name in (
                   "ota_common.h", "version_order.h", "topic_filter.h", "device_key.h", "device_key.c",
                   "provisioning.h", "provisioning.c", "log_publish.h", "log_publish.c")),
               ("espidf/gen_config/CMakeLists.txt", "components/gen_config/CMakeLists.txt")),
}


# Timing, in one place for both flavours.
TLS_HANDSHAKE_TIMEOUT_S = 15
MQTT_SOCKET_TIMEOUT_S = 10
MQTT_NETWORK_TIMEOUT_MS = 10_000
TIME_SYNC_WAIT_MS = 10_000
WIFI_ASSOCIATE_TIMEOUT_MS = 15_000
WIFI_RETRY_FIRST_MS, WIFI_RETRY_CAP_MS = 1_000, 60_000
MQTT_RETRY_FIRST_MS, MQTT_RETRY_CAP_MS = 1_000, 120_000
LOOP_PERIOD_MS = 50
BOOTSTRAP_PASSWORD_CAPACITY = 64   # bytes of a bootstrap password read from NVS (gen makes 32 characters)
OTA_NETWORK_TIMEOUT_MS = 10_000
# The path an announced image is fetched from, after the server's https://<broker.host>:<ota.port>: /<id>/<sha256>.bin
OTA_PATH_CAPACITY = 1 + MAX_CLIENT_ID + 1 + 64 + len(".bin")


@dataclass(frozen=True)
class FirmwareProject:
    generated: dict[str, bytes]        # regenerated every run (byte-identical for the same inputs)
    env_name: str                      # the [env:...] of the project's platformio.ini (= target name)
    secret_files: frozenset[str] = field(default_factory=frozenset)  # paths in `generated` to write 0600


@dataclass(frozen=True)
class AppLayout:
    """Where the user's code lies, as the project's build files name it (generator.firmware.app_layout): the
    spec's folder relative to the firmware project, and the folders found in its lib/ and components/."""
    root: str = DEFAULT_APP_ROOT
    libraries: tuple[str, ...] = ()
    components: tuple[str, ...] = ()


def _check_constant_names(device: Device) -> None:
    seen: dict[str, str] = {}
    for name in [p.name for p in device.publish] + [s.name for s in device.subscribe]:
        other = seen.get(name.upper())
        if other is not None and other != name:
            raise UserError(f"device {device.id}: topic names {other!r} and {name!r} differ only in case; the "
                            "firmware names constants after them in upper case",
                            hint="rename one of them")
        seen[name.upper()] = name


@dataclass(frozen=True)
class PublishFacts:
    """One publish entry as gen_link and app.h are built with it."""
    name: str
    source: str                # C literal: the topic (secrets: embed) or its NVS key (secrets: nvs)
    qos: int
    retain: bool
    interval_s: int
    interval_ms: int
    max_payload: int
    max_payload_constant: str  # app.h's name for max_payload


@dataclass(frozen=True)
class SubscribeFacts:
    """One subscribe entry as gen_link and app.h are built with it."""
    name: str
    source: str                # C literal: the filter (secrets: embed) or its NVS key (secrets: nvs)
    qos: int
    max_payload: int
    max_payload_constant: str


@dataclass(frozen=True)
class OtaFacts:
    """What the update handler is built with (gen_ota_config.h, CMakeLists.txt's PROJECT_VER)."""
    version: str               # C literal
    version_text: str          # the spec allows [0-9A-Za-z.+_-] only: safe in CMake
    target: str
    project: str
    url_prefix: str
    url_capacity: int
    port: int
    topic: str
    firmware_topic: str
    confirm_timeout_ms: int
    network_timeout_ms: int
    qos: int
    announcement_capacity: int
    report_capacity: int
    chip_id: str
    key_digest_rows: tuple[str, ...]
    public_key_pem: str        # C literal: the signing key's public half, which checks downgrade permissions


@dataclass(frozen=True)
class LogFacts:
    """The device's log over MQTT (log_publish.c): level as ESP-IDF numbers it, the topic template as a C literal."""
    level: int
    level_name: str
    topic_template: str
    topic_capacity: int
    rate: int
    burst: int
    line_capacity: int


def _log_facts(device: Device) -> LogFacts | None:
    if device.log is None:
        return None
    placeholders = device.log.topic_template.count("{id}")
    return LogFacts(
        level=LOG_LEVELS.index(device.log.level), level_name=device.log.level,
        topic_template=c_string_literal(device.log.topic_template),
        topic_capacity=len(device.log.topic_template.encode()) + placeholders * (MAX_CLIENT_ID - len("{id}")) + 1,
        rate=device.log.rate, burst=device.log.burst, line_capacity=LOG_LINE_CAPACITY)


@dataclass(frozen=True)
class ProvisionFacts:
    """What gen_link's provisioning.c needs: the protocol's topics and limits (generator.provision.protocol) and
    the credentials partition (generator.firmware.nvs_image)."""
    partition: str
    namespace: str
    partition_offset: str
    partition_size: str
    request_max: int
    response_max: int
    request_id_digits: int
    topic_capacity: int
    bootstrap_suffix: str
    bootstrap_request_format: str
    bootstrap_response_format: str
    request_format: str
    response_format: str


@dataclass(frozen=True)
class VarFacts:
    """One of the spec's vars:, as gen_vars.h declares it and gen_link fills it."""
    name: str
    type: str                  # string, int or bool: gen_link's var_<type>() reads it from NVS text
    c_type: str
    source: str                # C: the value (secrets: embed) or its NVS key (secrets: nvs)
    shown: str                 # the spec's value, for a comment (escaped for one)


@dataclass(frozen=True)
class NvsKeyFacts:
    constant: str
    literal: str


@dataclass(frozen=True)
class FirmwareFacts:
    """Every fact a device's rendered files hold, decided once from the spec, its credentials and gen's limits.
    C values are literals already (generator.core.c_literals); the templates only place them."""
    flavour: str
    nvs: bool
    ota: OtaFacts | None
    log: LogFacts | None
    app_root: str                      # the spec's folder, relative to the project (POSIX)
    app_components: bool               # the spec's folder has components/ (ESP-IDF: EXTRA_COMPONENT_DIRS)
    other_starter: str                 # the other framework's starter, which this build leaves out
    header: str
    ini_header: str
    hash_header: str
    flavour_summary: str
    env_name: str
    project_name: str
    chip: str
    options: tuple[tuple[str, str], ...]
    uses_client_cert: bool
    own_key: bool
    bootstrap_password: str
    bootstrap_password_capacity: int
    provision_port: int
    provision: ProvisionFacts | None
    uses_password: bool
    device_id: str
    wifi_ssid: str
    wifi_password: str
    mqtt_password: str
    ca_pem: str
    cert_pem: str
    key_pem: str
    broker_host: str                # C literal: the broker's name (OTA downloads are fetched from it)
    broker_hosts: tuple[str, ...]   # C literals: every name the device dials, in turn (Broker.dial_hosts)
    broker_port: int
    clean_session: bool             # False on a RabbitMQ cluster: a persistent session survives a node's death
    keepalive: int
    socket_timeout_s: int
    handshake_timeout_s: int
    network_timeout_ms: int
    buffer_size: int
    inbound_topic_capacity: int
    inbound_payload_capacity: int
    outbound_payload_capacity: int
    status_topic: str
    status_online: str
    status_offline: str
    publishes: tuple[PublishFacts, ...]
    subscribes: tuple[SubscribeFacts, ...]
    scheduled: tuple[PublishFacts, ...]
    command: SubscribeFacts | None
    ntp_servers: tuple[str, ...]
    configtime_slots: int
    ntp: tuple[tuple[str, str], ...]
    ntp_constants: tuple[str, ...]
    time_sync_wait_ms: int
    wifi_associate_timeout_ms: int
    wifi_retry_first_ms: int
    wifi_retry_cap_ms: int
    mqtt_retry_first_ms: int
    mqtt_retry_cap_ms: int
    loop_period_ms: int
    nvs_namespace: str
    nvs_offset: str
    nvs_size: str
    device_id_capacity: int
    topic_capacity: int
    mqtt_password_capacity: int
    pem_capacity: int
    nvs_keys: tuple[NvsKeyFacts, ...]
    vars: tuple[VarFacts, ...]
    var_capacity: int
    idf_dependencies: tuple[tuple[str, str], ...]   # main/idf_component.yml: (name, YAML value), both quoted
    compile_options: tuple[str, ...]                # ESP-IDF: the spec's build_flags, as COMPILE_OPTIONS
    security: SecurityFacts | None = None           # ESP-IDF with security: (generator.firmware.security)


def _ota_facts(device: Device, public_key: bytes | None) -> OtaFacts | None:
    """What the update handler is built with, or None without `ota:`."""
    if device.ota is None:
        return None
    if public_key is None:
        raise UserError(f"device {device.id} updates over the air, but the project's OTA signing key is not known",
                        hint="run `gen generate SPEC`, which creates pki/private/ota-signing-key.pem")
    prefix = f"https://{device.broker.host}:{device.ota.port}/"
    digest = key_digest(public_key)
    return OtaFacts(
        version=c_string_literal(device.firmware_version),
        version_text=device.firmware_version,
        target=c_string_literal(device.target.name),
        project=c_string_literal(device.ota.project),
        url_prefix=c_string_literal(prefix),
        url_capacity=len(prefix.encode()) + OTA_PATH_CAPACITY + 1,
        port=device.ota.port,
        topic=c_string_literal(device.ota.topic),
        firmware_topic=c_string_literal(device.ota.firmware_topic),
        confirm_timeout_ms=device.ota.confirm_timeout * 1000,
        network_timeout_ms=OTA_NETWORK_TIMEOUT_MS,
        qos=OTA_QOS,
        announcement_capacity=OTA_ANNOUNCEMENT_CAPACITY,
        report_capacity=FIRMWARE_REPORT_CAPACITY,
        chip_id=f"0x{CHIP_IDS[device.chip]:04x}",
        key_digest_rows=tuple(", ".join(f"0x{byte:02x}" for byte in digest[i:i + 8]) + ","
                              for i in range(0, 32, 8)),
        public_key_pem=c_string_literal_lines(public_key),
    )


def firmware_facts(device: Device, credentials: ClientCredentials, spec_name: str, app: AppLayout,
                   ota_public_key: bytes | None = None) -> FirmwareFacts:
    """The facts of one device's firmware project; refuses a device whose credentials are incomplete."""
    nvs = device.secrets == "nvs"
    flavour = device.framework
    _check_constant_names(device)
    own_key = device.makes_own_key
    if own_key and not nvs and credentials.bootstrap_password is None:
        raise UserError(f"device {device.id} makes its own key but has no bootstrap password",
                        hint="run `gen generate` so the PKI creates one")
    if not nvs and not own_key and device.uses_client_cert and (credentials.cert_pem is None or credentials.key_pem is None):
        raise UserError(f"device {device.id} uses auth {device.auth!r} but has no client certificate and key",
                        hint="run `gen generate` so the PKI issues them")
    if not nvs and device.uses_password and credentials.password is None:
        raise UserError(f"device {device.id} uses auth {device.auth!r} but has no MQTT password",
                        hint="run `gen generate` so the PKI creates one")

    publishes = tuple(PublishFacts(
        name=p.name,
        source=c_string_literal(publish_topic_key(index) if nvs else p.topic),
        qos=p.qos, retain=p.retain, interval_s=p.interval, interval_ms=p.interval * 1000,
        max_payload=p.max_payload, max_payload_constant=f"{p.name.upper()}_MAX_PAYLOAD",
    ) for index, p in enumerate(device.publish))
    subscribes = tuple(SubscribeFacts(
        name=s.name,
        source=c_string_literal(subscribe_filter_key(index) if nvs else s.filter),
        qos=s.qos, max_payload=s.max_payload, max_payload_constant=f"{s.name.upper()}_MAX_PAYLOAD",
    ) for index, s in enumerate(device.subscribe))
    scheduled = tuple(p for p in publishes if p.interval_s > 0)

    require_carriable(device)
    receive_topics = [received_topic_capacity(device, s.filter) for s in device.subscribe]
    buffer_size = mqtt_buffer_size(device, password_length=len((credentials.password or "").encode()))

    secrets_word = "secrets in NVS" if nvs else "secrets embedded"
    library = "PubSubClient" if flavour == "arduino" else "esp-mqtt"
    source = c_comment_text(spec_name)
    generated_line = f"Generated by gen from {source}. Do not edit: change the spec and run `gen generate` again."
    ntp = list(device.ntp)  # the spec's rules keep it within ntp_server_limit(flavour)
    configtime_slots = ntp_server_limit("arduino").count
    return FirmwareFacts(
        flavour=flavour,
        nvs=nvs,
        ota=_ota_facts(device, ota_public_key),
        log=_log_facts(device),
        app_root=app.root,
        app_components=bool(app.components),
        other_starter=OTHER_STARTER[flavour],
        header=f"// {generated_line}",
        ini_header=f"; {generated_line}",
        hash_header=f"# {generated_line}",   # CMake, Python, partition CSV, sdkconfig
        flavour_summary=c_comment_text(f"{flavour}, {library}, {device.auth}, {secrets_word}"),
        env_name=device.target.name,
        project_name="firmware",
        chip=device.chip,
        options=_env_options(device, app),
        uses_client_cert=device.uses_client_cert,
        own_key=own_key,
        bootstrap_password=c_string_literal(credentials.bootstrap_password or ""),
        bootstrap_password_capacity=BOOTSTRAP_PASSWORD_CAPACITY,
        provision_port=device.broker.provision_port,
        provision=_provision_facts(device) if own_key else None,
        uses_password=device.uses_password,
        device_id=c_string_literal(device.id),
        wifi_ssid=c_string_literal(device.wifi.ssid),
        wifi_password=c_string_literal(device.wifi.password),
        mqtt_password=c_string_literal(credentials.password or ""),
        ca_pem=c_string_literal_lines(credentials.ca_pem),
        cert_pem=c_string_literal_lines(credentials.cert_pem or b""),
        key_pem=c_string_literal_lines(credentials.key_pem or b""),
        broker_host=c_string_literal(device.broker.host),
        broker_hosts=tuple(c_string_literal(host) for host in device.broker.dial_hosts),
        broker_port=device.broker.port,
        clean_session=not device.broker.clustered,
        keepalive=device.keepalive,
        socket_timeout_s=MQTT_SOCKET_TIMEOUT_S,
        handshake_timeout_s=TLS_HANDSHAKE_TIMEOUT_S,
        network_timeout_ms=MQTT_NETWORK_TIMEOUT_MS,
        buffer_size=buffer_size,
        inbound_topic_capacity=max(receive_topics, default=0),
        inbound_payload_capacity=max((s.max_payload for s in device.subscribe), default=0),
        outbound_payload_capacity=max((p.max_payload for p in device.publish if p.interval > 0), default=0),
        status_topic=c_string_literal(device.status.topic),
        status_online=c_string_literal(device.status.online),
        status_offline=c_string_literal(device.status.offline),
        publishes=publishes,
        subscribes=subscribes,
        scheduled=scheduled,
        command=subscribes[0] if subscribes else None,
        ntp_servers=tuple([c_string_literal(server) for server in ntp] + ["NULL"] * (configtime_slots - len(ntp))),
        configtime_slots=configtime_slots,
        ntp=tuple((f"NTP_SERVER_{i + 1}", c_string_literal(server)) for i, server in enumerate(ntp)),
        ntp_constants=tuple(f"NTP_SERVER_{i + 1}" for i in range(len(ntp))),
        time_sync_wait_ms=TIME_SYNC_WAIT_MS,
        wifi_associate_timeout_ms=WIFI_ASSOCIATE_TIMEOUT_MS,
        wifi_retry_first_ms=WIFI_RETRY_FIRST_MS,
        wifi_retry_cap_ms=WIFI_RETRY_CAP_MS,
        mqtt_retry_first_ms=MQTT_RETRY_FIRST_MS,
        mqtt_retry_cap_ms=MQTT_RETRY_CAP_MS,
        loop_period_ms=LOOP_PERIOD_MS,
        nvs_namespace=c_string_literal(NVS_NAMESPACE),
        nvs_offset=f"{nvs_offset(device):#x}",
        nvs_size=f"{nvs_partition_size(flavour):#x}",
        device_id_capacity=MAX_CLIENT_ID,
        topic_capacity=NVS_TOPIC_CAPACITY,
        mqtt_password_capacity=NVS_PASSWORD_CAPACITY,
        pem_capacity=PEM_CAPACITY,
        vars=tuple(VarFacts(
            name=var.name, type=var.type, c_type=_VAR_C_TYPES[var.type],
            source=c_string_literal(var_key(index)) if nvs else _var_literal(var.value),
            shown=c_comment_text(repr(var.value) if var.type == "string" else var_text(var.value)),
        ) for index, var in enumerate(device.vars)),
        var_capacity=VAR_STRING_MAX,
        idf_dependencies=_idf_dependencies(device, app) if flavour == "espidf" else (),
        compile_options=device.build_flags if flavour == "espidf" else (),
        security=security_facts(device),
        nvs_keys=tuple(NvsKeyFacts(constant=constant, literal=c_string_literal(key)) for constant, key in (
            ("NVS_KEY_DEVICE_ID", KEY_DEVICE_ID), ("NVS_KEY_WIFI_SSID", KEY_WIFI_SSID),
            ("NVS_KEY_WIFI_PASSWORD", KEY_WIFI_PASSWORD))
            + ((("NVS_KEY_MQTT_PASSWORD", KEY_MQTT_PASSWORD),) if device.uses_password else ())
            + (("NVS_KEY_CA_PEM", KEY_CA_PEM),)
            + ((("NVS_KEY_BOOTSTRAP_PASSWORD", KEY_BOOTSTRAP_PASSWORD),) if own_key else ())
            + ((("NVS_KEY_CERT_PEM", KEY_CERT_PEM), ("NVS_KEY_KEY_PEM", KEY_KEY_PEM))
               if device.uses_client_cert and not own_key else ())
            + (("NVS_KEY_STATUS_TOPIC", KEY_STATUS_TOPIC),)
            + ((("NVS_KEY_OTA_TOPIC", KEY_OTA_TOPIC), ("NVS_KEY_FIRMWARE_TOPIC", KEY_FIRMWARE_TOPIC))
               if device.ota is not None else ())),
    )


def _provision_facts(device: Device) -> ProvisionFacts:
    topics = {f"{name}_format": c_string_literal(topic("%s", channel))
              for name, topic, channel in (("bootstrap_request", request_topic, "bootstrap"),
                                           ("bootstrap_response", response_topic, "bootstrap"),
                                           ("request", request_topic, "operational"),
                                           ("response", response_topic, "operational"))}
    return ProvisionFacts(
        partition=c_string_literal(CREDENTIALS_PARTITION),
        namespace=c_string_literal(CREDENTIALS_NAMESPACE),
        partition_offset=f"{CREDENTIALS_PARTITION_OFFSET[device.framework]:#x}",
        partition_size=f"{CREDENTIALS_PARTITION_SIZE:#x}",
        request_max=REQUEST_MAX_BYTES,
        response_max=RESPONSE_MAX_BYTES,
        request_id_digits=REQUEST_ID_HEX_DIGITS,
        topic_capacity=len(response_topic("x" * MAX_CLIENT_ID, "bootstrap")) + 1,
        bootstrap_suffix=BOOTSTRAP_USER_SUFFIX,
        **topics,
    )


_VAR_C_TYPES = {"string": "const char *", "int": "int32_t", "bool": "bool"}


def _var_literal(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}" if value != -2**31 else "(-2147483647 - 1)"   # INT32_MIN: a literal cannot spell it
    return c_string_literal(value)


def _env_options(device: Device, app: AppLayout) -> tuple[tuple[str, str], ...]:
    """The project's [env:...] options: the catalogue's; for Arduino with the user's libraries added to lib_deps
    (lib/ next to the spec, then the spec's `libraries:`), the spec's build_flags, and the ESP-IDF starter left out."""
    options = dict(device.target.options)
    if device.framework == "arduino":
        local = [f"{name}=symlink://{app.root}/{APP_LIBRARIES_DIR}/{name}" for name in app.libraries]
        spec = [f"{library.name}=symlink://{posixpath.normpath(f'{app.root}/{library.entry}')}"
                if library.path is not None else library.entry for library in device.libraries]
        options["lib_deps"] = "\n".join([*options.get("lib_deps", "").split("\n"), *local, *spec]).strip("\n")
        options["build_flags"] = "\n".join([*options.get("build_flags", "").split("\n"), *device.build_flags]).strip("\n")
        options["build_src_filter"] = f"+<*> -<{OTHER_STARTER['arduino']}>"
    return tuple((key, _ini_value(value)) for key, value in options.items() if value)


def _idf_dependencies(device: Device, app: AppLayout) -> tuple[tuple[str, str], ...]:
    """The spec's libraries as ESP-IDF component manager dependencies of the main component: a registry component
    with its version (any, without one), a folder of the user's by its path from main/."""
    dependencies = []
    for library in device.libraries:
        if library.path is not None:
            path = posixpath.normpath(f"../{app.root}/{library.entry}")
            dependencies.append((json.dumps(library.name), "{path: " + json.dumps(path) + "}"))
        else:
            dependencies.append((json.dumps(library.registry_name), json.dumps(library.version or "*")))
    return tuple(dependencies)


def _ini_value(text: str) -> str:
    """A catalogue option as platformio.ini text: extra lines of a multi-line value are indented."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return "\n".join([""] + [f"    {line}" for line in lines if line.strip()])


# The rendered files of each flavour: (template under templates/<flavour>/ or templates/common/, path in the project).
_RENDERED = {
    "arduino": (("platformio.ini", "platformio.ini"), ("partitions.csv", "partitions.csv"),
                ("include/gen_config.h", "include/gen_config.h"), ("include/app.h", "include/app.h"),
                ("test/test_device.py", "test/test_device.py")),
    "espidf": (("platformio.ini", "platformio.ini"), ("partitions.csv", "partitions.csv"),
               ("sdkconfig.defaults", "sdkconfig.defaults"), ("CMakeLists.txt", "CMakeLists.txt"),
               ("main/CMakeLists.txt", f"{IDF_MAIN_COMPONENT}/CMakeLists.txt"),
               ("include/gen_config.h", "components/gen_config/include/gen_config.h"),
               ("include/app.h", "components/gen_config/include/app.h"),
               ("test/test_device.py", "test/test_device.py")),
}


def credentials_header(framework: str) -> str:
    """Where a secrets: embed project keeps its secrets (written 0600)."""
    return f"{CONFIG_DIR[framework]}/gen_credentials.h"


def render_firmware(device: Device, credentials: ClientCredentials, *, spec_name: str = "the device spec",
                    app: AppLayout = AppLayout(), ota_public_key: bytes | None = None) -> FirmwareProject:
    """The device's PlatformIO project. `spec_name` (e.g. "device.yaml") is named in every generated file's
    header; keep it the same for every device of a fleet so their `secrets: nvs` projects stay identical.
    `app` says where the user's code lies (by default, where it lies when OUT is the spec folder's build/).
    `ota_public_key`: with `ota:`, the public half of the project's signing key (PEM, pki/ota-signing.pem): the
    firmware checks downgrade permissions with it, and the Arduino firmware image signatures against its digest."""
    flavour = device.framework
    facts = firmware_facts(device, credentials, spec_name, app, ota_public_key)
    rendered = list(_RENDERED[flavour])
    config = CONFIG_DIR[flavour]
    if device.ota is not None:
        rendered.append(("include/gen_ota_config.h", f"{config}/gen_ota_config.h"))
    if device.secrets == "embed":
        rendered.append(("include/gen_credentials.h", credentials_header(flavour)))
    if device.vars:
        rendered.append(("include/gen_vars.h", f"{config}/gen_vars.h"))
    if facts.idf_dependencies:
        rendered.append(("main/idf_component.yml", f"{IDF_MAIN_COMPONENT}/idf_component.yml"))
    generated = {path: _render(flavour, template, facts) for template, path in rendered}
    generated.update(link_library(flavour))
    secret_files = frozenset({credentials_header(flavour)} & set(generated))
    return FirmwareProject(generated=generated, env_name=device.target.name, secret_files=secret_files)


def link_library(framework: str) -> dict[str, bytes]:
    """gen_link's sources as they lie in a project of this framework: the same bytes for every spec."""
    return {path: (LINK_LIBRARY_DIR / source).read_bytes() for source, path in _LINK_FILES[framework]}


def render_app_starter(devices: Sequence[Device]) -> bytes:
    """The first version of the user's app source for these devices (all of one framework): every function
    their app.h declares, each with a small working body."""
    frameworks = {device.framework for device in devices}
    assert len(frameworks) == 1, "one app source per framework"
    scheduled: dict[str, dict] = {}
    subscribes: dict[str, dict] = {}
    ack = None
    for device in devices:
        for p in device.publish:
            if p.interval > 0:
                scheduled.setdefault(p.name, {"name": p.name})
            if p.name == "ack":
                ack = p.name
        for s in device.subscribe:
            subscribes.setdefault(s.name, {"name": s.name})
    template = f"new/{USER_APP_SOURCE[frameworks.pop()]}.j2"
    return render_template(template, scheduled=list(scheduled.values()), subscribes=list(subscribes.values()),
                           ack=ack).encode("utf-8")


# "undefined reference to `app_build_humidity'" (C) or "...`app_build_humidity(char*, unsigned int)'" (C++).
_UNDEFINED_APP_FUNCTION = re.compile(r"undefined reference to [`'‘\"](?P<name>app_[A-Za-z0-9_]+)")


def user_app_path(firmware_dir: Path, framework: str) -> Path | None:
    """The folder of the user's app code a generated project compiles (its src/, next to the spec)."""
    return user_code(Path(firmware_dir)).app


def missing_app_functions(linker_output: str, firmware_dir: Path, framework: str) -> UserError | None:
    """When the link failed because the user's app source lacks functions app.h declares (the spec gained a
    publish or subscribe entry), the error that names each one with the declaration to add; else None."""
    names = list(dict.fromkeys(_UNDEFINED_APP_FUNCTION.findall(linker_output)))
    if not names:
        return None
    app_header = Path(firmware_dir) / CONFIG_DIR[framework] / "app.h"
    try:
        header = app_header.read_text(encoding="utf-8").splitlines()
    except OSError:
        header = []
    declarations = []
    for name in names:
        line = next((text.strip() for text in header if re.search(rf"\b{name}\(", text)), f"{name}(...);")
        declarations.append("  " + line)
    folder = user_app_path(firmware_dir, framework)
    app = f"{folder}/" if folder is not None else "your app's src/"
    count = "function" if len(names) == 1 else "functions"
    return UserError(f"your app code ({app}) lacks {len(names)} {count} the spec now needs, declared in "
                     f"{app_header}:\n" + "\n".join(declarations),
                     hint=f"define {'it' if len(names) == 1 else 'them'} in {app}; the comment above each "
                          "declaration in app.h says what it must do")


def _render(flavour: str, path: str, facts: FirmwareFacts) -> bytes:
    """templates/<flavour>/<path>.j2, or templates/common/<path>.j2 for a file both flavours share."""
    own = f"{flavour}/{path}.j2"
    template = own if (TEMPLATES_DIR / own).is_file() else f"common/{path}.j2"
    return render_template(template, facts=facts).encode("utf-8")
