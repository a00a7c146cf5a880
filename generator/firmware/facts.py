"""The facts of one device's firmware project, as a typed frozen FirmwareFacts the templates read (only facts are
rendered: gen's device runtime, gen_link, is plain C/C++). Each value that reaches C, INI or CMake is escaped for it
here (generator.core.c_literals); the runtime's timings and capacities are declared once, next to what they
constrain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from generator.core.app_image import CHIP_IDS
from generator.core.c_literals import c_comment_text, c_string_literal, c_string_literal_lines
from generator.core.errors import UserError
from generator.firmware.app_layout import OTHER_STARTER, AppLayout
from generator.firmware.build_options import env_options, idf_dependencies
from generator.firmware.log_facts import LogFacts, log_facts
from generator.firmware.security import SecurityFacts, nvs_offset, security_facts
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
    nvs_partition_size,
    publish_topic_key,
    subscribe_filter_key,
    var_key,
    var_text,
)
from generator.pki.credentials import ClientCredentials
from generator.pki.ota_signing import key_digest
from generator.spec.device_limits import (
    FIRMWARE_REPORT_CAPACITY,
    MAX_CLIENT_ID,
    NVS_PASSWORD_CAPACITY,
    NVS_TOPIC_CAPACITY,
    OTA_ANNOUNCEMENT_CAPACITY,
    OTA_DOWNGRADE_CAPACITY,
    OTA_QOS,
    PEM_CAPACITY,
    mqtt_buffer_size,
    ntp_server_limit,
    received_topic_capacity,
)
from generator.spec.contract import WIFI_SSID_MAX_BYTES, WPA2_PSK_HEX_DIGITS
from generator.spec.model import VAR_STRING_MAX, Device
from generator.spec.provisioning_protocol import (
    BOOTSTRAP_USER_SUFFIX,
    REQUEST_ID_HEX_DIGITS,
    REQUEST_MAX_BYTES,
    RESPONSE_MAX_BYTES,
    request_topic,
    response_topic,
)

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
    downgrade_capacity: int
    report_capacity: int
    chip_id: str
    key_digest_rows: tuple[str, ...]
    public_key_pem: str        # C literal: the signing key's public half, which checks downgrade permissions


@dataclass(frozen=True)
class ProvisionFacts:
    """What gen_link's provisioning.c needs: the protocol's topics and limits (generator.spec.provisioning_protocol) and
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
    wifi_ssid_capacity: int        # bytes: the spec's rule (generator.spec.contract)
    wifi_password_capacity: int
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
        downgrade_capacity=OTA_DOWNGRADE_CAPACITY,
        report_capacity=FIRMWARE_REPORT_CAPACITY,
        chip_id=f"0x{CHIP_IDS[device.chip]:04x}",
        key_digest_rows=tuple(", ".join(f"0x{byte:02x}" for byte in digest[i:i + 8]) + "," for i in range(0, 32, 8)),
        public_key_pem=c_string_literal_lines(public_key),
    )


def firmware_facts(device: Device, credentials: ClientCredentials, spec_name: str, app: AppLayout,
                   ota_public_key: bytes | None = None) -> FirmwareFacts:
    """The facts of one device's firmware project; refuses a device whose credentials are incomplete."""
    nvs = device.secrets == "nvs"
    flavour = device.framework
    _check_constant_names(device)
    own_key = device.makes_own_key
    _check_credentials(device, credentials)
    publishes, subscribes = _topic_facts(device)
    scheduled = tuple(p for p in publishes if p.interval_s > 0)
    receive_topics = [received_topic_capacity(device, s.filter) for s in device.subscribe]
    buffer_size = mqtt_buffer_size(device, password_length=len((credentials.password or "").encode()))

    ntp = list(device.ntp)  # the spec's rules keep it within ntp_server_limit(flavour)
    configtime_slots = ntp_server_limit("arduino").count
    return FirmwareFacts(
        flavour=flavour,
        nvs=nvs,
        ota=_ota_facts(device, ota_public_key),
        log=log_facts(device),
        app_root=app.root,
        app_components=bool(app.components),
        other_starter=OTHER_STARTER[flavour],
        **_headers(device, spec_name),
        env_name=device.target.name,
        project_name="firmware",
        chip=device.chip,
        options=env_options(device, app),
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
        wifi_ssid_capacity=WIFI_SSID_MAX_BYTES,
        wifi_password_capacity=WPA2_PSK_HEX_DIGITS,
        mqtt_password=c_string_literal(credentials.password or ""),
        ca_pem=c_string_literal_lines(credentials.ca_pem),
        cert_pem=c_string_literal_lines(credentials.cert_pem or b""),
        key_pem=c_string_literal_lines(credentials.key_pem or b""),
        **_broker_facts(device),
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
        vars=_var_facts(device),
        var_capacity=VAR_STRING_MAX,
        idf_dependencies=idf_dependencies(device, app) if flavour == "espidf" else (),
        compile_options=device.build_flags if flavour == "espidf" else (),
        security=security_facts(device),
        nvs_keys=_nvs_key_facts(device),
    )


_BrokerFacts = TypedDict("_BrokerFacts", {"broker_host": str, "broker_hosts": tuple[str, ...], "broker_port": int,
                                           "clean_session": bool})


def _broker_facts(device: Device) -> _BrokerFacts:
    """Where the device dials: the broker's name (OTA downloads come from it) and every name in turn (a cluster)."""
    return {"broker_host": c_string_literal(device.broker.host),
            "broker_hosts": tuple(c_string_literal(host) for host in device.broker.dial_hosts),
            "broker_port": device.broker.port, "clean_session": not device.broker.clustered}


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


def _check_credentials(device: Device, credentials: ClientCredentials) -> None:
    """A device whose secrets are compiled in needs every one of them from the PKI."""
    if device.secrets == "nvs":
        return
    if device.makes_own_key and credentials.bootstrap_password is None:
        raise UserError(f"device {device.id} makes its own key but has no bootstrap password",
                        hint="run `gen generate` so the PKI creates one")
    if not device.makes_own_key and device.uses_client_cert and (credentials.cert_pem is None
                                                                 or credentials.key_pem is None):
        raise UserError(f"device {device.id} uses auth {device.auth!r} but has no client certificate and key",
                        hint="run `gen generate` so the PKI issues them")
    if device.uses_password and credentials.password is None:
        raise UserError(f"device {device.id} uses auth {device.auth!r} but has no MQTT password",
                        hint="run `gen generate` so the PKI creates one")


def _topic_facts(device: Device) -> tuple[tuple[PublishFacts, ...], tuple[SubscribeFacts, ...]]:
    """Each publish and subscribe entry; with secrets: nvs its topic is read from NVS under its key."""
    nvs = device.secrets == "nvs"
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
    return publishes, subscribes


def _var_facts(device: Device) -> tuple[VarFacts, ...]:
    nvs = device.secrets == "nvs"
    return tuple(VarFacts(
        name=var.name, type=var.type, c_type=_VAR_C_TYPES[var.type],
        source=c_string_literal(var_key(index)) if nvs else _var_literal(var.value),
        shown=c_comment_text(repr(var.value) if var.type == "string" else var_text(var.value)),
    ) for index, var in enumerate(device.vars))


def _nvs_key_facts(device: Device) -> tuple[NvsKeyFacts, ...]:
    """The NVS keys the firmware reads its settings and secrets from (secrets: nvs)."""
    own_key = device.makes_own_key
    return tuple(NvsKeyFacts(constant=constant, literal=c_string_literal(key)) for constant, key in (
            ("NVS_KEY_DEVICE_ID", KEY_DEVICE_ID), ("NVS_KEY_WIFI_SSID", KEY_WIFI_SSID),
            ("NVS_KEY_WIFI_PASSWORD", KEY_WIFI_PASSWORD))
            + ((("NVS_KEY_MQTT_PASSWORD", KEY_MQTT_PASSWORD),) if device.uses_password else ())
            + (("NVS_KEY_CA_PEM", KEY_CA_PEM),)
            + ((("NVS_KEY_BOOTSTRAP_PASSWORD", KEY_BOOTSTRAP_PASSWORD),) if own_key else ())
            + ((("NVS_KEY_CERT_PEM", KEY_CERT_PEM), ("NVS_KEY_KEY_PEM", KEY_KEY_PEM))
               if device.uses_client_cert and not own_key else ())
            + (("NVS_KEY_STATUS_TOPIC", KEY_STATUS_TOPIC),)
            + ((("NVS_KEY_OTA_TOPIC", KEY_OTA_TOPIC), ("NVS_KEY_FIRMWARE_TOPIC", KEY_FIRMWARE_TOPIC))
               if device.ota is not None else ()))


def _headers(device: Device, spec_name: str) -> dict[str, str]:
    """The line every generated file starts with, as each kind of file writes a comment, and the flavour's summary."""
    generated_line = (f"Generated by gen from {c_comment_text(spec_name)}. Do not edit: change the spec and run "
                      "`gen generate` again.")
    library = "PubSubClient" if device.framework == "arduino" else "esp-mqtt"
    secrets_word = "secrets in NVS" if device.secrets == "nvs" else "secrets embedded"
    return {"header": f"// {generated_line}", "ini_header": f"; {generated_line}",
            "hash_header": f"# {generated_line}",   # CMake, Python, partition CSV, sdkconfig
            "flavour_summary": c_comment_text(f"{device.framework}, {library}, {device.auth}, {secrets_word}")}
