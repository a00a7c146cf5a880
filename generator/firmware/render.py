"""Firmware: the PlatformIO project of one device, Arduino (PubSubClient + WiFiClientSecure) or ESP-IDF (esp-mqtt).

`render_firmware(device, credentials)` is a pure function from the spec's device and its credentials to files.
The user's application code is not among them: it lives next to the spec (`USER_APP_SOURCE`, one file per
framework, shared by every device, in git); the generated `src/app.cpp` / `src/app.c` includes it, so it is built
in place. `render_app_starter` renders its first version, which `gen generate` writes once.
Templates (`templates/<flavour>/<path>.j2` renders `<path>`) read like the files they make; every value that
comes from a user reaches them already escaped by `generator.core.c_literals`. Sizes, names and flags are decided here.

With `secrets: nvs` nothing device-specific enters the generated files (the id, topics and secrets are read from
the device's NVS partition at boot, see `generator.firmware.nvs_image`), so devices of a target whose other settings
match get byte-identical projects and one app image.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from generator.core.c_literals import c_comment_text, c_string_literal, c_string_literal_lines
from generator.core.errors import UserError
from generator.core.paths import TEMPLATES_DIR
from generator.core.rendering import render_template
from generator.firmware.limits import (
    FIRMWARE_REPORT_CAPACITY,
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
)
from generator.ota.image import CHIP_IDS
from generator.pki.credentials import ClientCredentials
from generator.provision.protocol import (
    BOOTSTRAP_USER_SUFFIX,
    REQUEST_ID_HEX_DIGITS,
    REQUEST_MAX_BYTES,
    RESPONSE_MAX_BYTES,
    request_topic,
    response_topic,
)
from generator.spec.model import Device

# render_nvs_image and the partition constants are the firmware's other half; importable from here as well.
__all__ = [
    "FirmwareProject", "render_firmware", "render_nvs_image", "render_app_starter", "app_include_path",
    "NVS_PARTITION_OFFSET", "NVS_PARTITION_SIZES", "nvs_partition_size", "USER_APP_SOURCE",
]

# The user's application source, relative to the spec's folder: created once by `gen generate`, never overwritten.
USER_APP_SOURCE = {"arduino": "src/app.cpp", "espidf": "src/app.c"}
# Where the firmware sources sit by default (OUT = <spec folder>/build): OUT/devices/<id>/firmware/src/.
DEFAULT_APP_INCLUDE = {framework: f"../../../../../{source}" for framework, source in USER_APP_SOURCE.items()}
# Files holding secrets (embed mode): the writer gives them mode 0600.
SECRET_FILES = ("src/credentials.h",)


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


def app_include_path(firmware_dir: Path, spec_dir: Path, framework: str) -> str:
    """The user's app source as the generated src/app.* includes it: relative to firmware_dir/src/."""
    target = Path(spec_dir).absolute() / USER_APP_SOURCE[framework]
    include = Path(os.path.relpath(target, Path(firmware_dir).absolute() / "src")).as_posix()
    if any(ch in include for ch in '"\\\'\n') or "//" in include or "/*" in include:
        raise UserError(f"the path from {firmware_dir} to {target} cannot be written in a C #include",
                        hint="use folders whose names have no quotes, backslashes or newlines")
    return include


def _check_constant_names(device: Device) -> None:
    seen: dict[str, str] = {}
    for name in [p.name for p in device.publish] + [s.name for s in device.subscribe]:
        other = seen.get(name.upper())
        if other is not None and other != name:
            raise UserError(f"device {device.id}: topic names {other!r} and {name!r} differ only in case; the "
                            "firmware names constants after them in upper case",
                            hint="rename one of them")
        seen[name.upper()] = name


def _ota_values(device: Device, key_digest: bytes | None) -> dict | None:
    """What the update handler is built with (ota_config.h, config.h, CMakeLists.txt), or None without `ota:`."""
    if device.ota is None:
        return None
    if key_digest is None or len(key_digest) != 32:
        raise UserError(f"device {device.id} updates over the air, but the project's OTA signing key is not known",
                        hint="run `gen generate SPEC`, which creates pki/private/ota-signing-key.pem")
    prefix = f"https://{device.broker.host}:{device.ota.port}/"
    return {
        "version": c_string_literal(device.firmware_version),
        "version_text": device.firmware_version,         # the spec allows [0-9A-Za-z.+_-] only: safe in CMake
        "target": c_string_literal(device.target.name),
        "project": c_string_literal(device.ota.project),
        "url_prefix": c_string_literal(prefix),
        "url_capacity": len(prefix.encode()) + OTA_PATH_CAPACITY + 1,
        "port": device.ota.port,
        "topic": c_string_literal(device.ota.topic),
        "firmware_topic": c_string_literal(device.ota.firmware_topic),
        "confirm_timeout_ms": device.ota.confirm_timeout * 1000,
        "network_timeout_ms": OTA_NETWORK_TIMEOUT_MS,
        "qos": OTA_QOS,
        "announcement_capacity": OTA_ANNOUNCEMENT_CAPACITY,
        "report_capacity": FIRMWARE_REPORT_CAPACITY,
        "chip_id": f"0x{CHIP_IDS[device.chip]:04x}",
        "key_digest_rows": [", ".join(f"0x{byte:02x}" for byte in key_digest[i:i + 8]) + ","
                            for i in range(0, 32, 8)],
    }


def _template_values(device: Device, credentials: ClientCredentials, spec_name: str, app_include: str,
                     ota_key_digest: bytes | None = None) -> dict:
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
    scheduled = [values for values, p in zip(publishes, device.publish) if p.interval > 0]
    ack = next((p.name for p in device.publish if p.name == "ack"), None)

    require_carriable(device)
    receive_topics = [received_topic_capacity(device, s.filter) for s in device.subscribe]
    buffer_size = mqtt_buffer_size(device, password_length=len((credentials.password or "").encode()))

    secrets_word = "secrets in NVS" if nvs else "secrets embedded"
    library = "PubSubClient" if flavour == "arduino" else "esp-mqtt"
    source = c_comment_text(spec_name)
    generated_line = f"Generated by gen from {source}. Do not edit: change the spec and run `gen generate` again."
    ntp = list(device.ntp)  # the spec's rules keep it within ntp_server_limit(flavour)
    configtime_slots = ntp_server_limit("arduino").count
    return {
        "nvs": nvs,
        "ota": _ota_values(device, ota_key_digest),
        "app_source": USER_APP_SOURCE[flavour],
        "app_include": app_include,
        "header": f"// {generated_line}",
        "ini_header": f"; {generated_line}",
        "hash_header": f"# {generated_line}",   # CMake, Python, partition CSV, sdkconfig
        "flavour_summary": c_comment_text(f"{flavour}, {library}, {device.auth}, {secrets_word}"),
        "env_name": device.target.name,
        "project_name": "firmware",
        "chip": device.chip,
        "options": [(key, _ini_value(value)) for key, value in device.target.options],
        "uses_client_cert": device.uses_client_cert,
        "own_key": own_key,
        "bootstrap_password": c_string_literal(credentials.bootstrap_password or ""),
        "bootstrap_password_capacity": BOOTSTRAP_PASSWORD_CAPACITY,
        "provision_port": device.broker.provision_port,
        "provision": _provision_values(device) if own_key else None,
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
        "outbound_payload_capacity": max((p.max_payload for p in device.publish if p.interval > 0), default=0),
        "status_topic": c_string_literal(device.status.topic),
        "status_online": c_string_literal(device.status.online),
        "status_offline": c_string_literal(device.status.offline),
        "publishes": publishes,
        "subscribes": subscribes,
        "scheduled": scheduled,
        "ack": ack,
        "command": subscribes[0] if subscribes else None,
        "ntp_servers": [c_string_literal(server) for server in ntp] + ["nullptr"] * (configtime_slots - len(ntp)),
        "configtime_slots": configtime_slots,
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
        "device_id_capacity": MAX_CLIENT_ID,
        "topic_capacity": NVS_TOPIC_CAPACITY,
        "mqtt_password_capacity": NVS_PASSWORD_CAPACITY,
        "pem_capacity": PEM_CAPACITY,
        "nvs_keys": [{"constant": constant, "literal": c_string_literal(key)} for constant, key in (
            ("NVS_KEY_DEVICE_ID", KEY_DEVICE_ID), ("NVS_KEY_WIFI_SSID", KEY_WIFI_SSID),
            ("NVS_KEY_WIFI_PASSWORD", KEY_WIFI_PASSWORD))
            + ((("NVS_KEY_MQTT_PASSWORD", KEY_MQTT_PASSWORD),) if device.uses_password else ())
            + (("NVS_KEY_CA_PEM", KEY_CA_PEM),)
            + ((("NVS_KEY_BOOTSTRAP_PASSWORD", KEY_BOOTSTRAP_PASSWORD),) if own_key else ())
            + ((("NVS_KEY_CERT_PEM", KEY_CERT_PEM), ("NVS_KEY_KEY_PEM", KEY_KEY_PEM))
               if device.uses_client_cert and not own_key else ())
            + (("NVS_KEY_STATUS_TOPIC", KEY_STATUS_TOPIC),)
            + ((("NVS_KEY_OTA_TOPIC", KEY_OTA_TOPIC), ("NVS_KEY_FIRMWARE_TOPIC", KEY_FIRMWARE_TOPIC))
               if device.ota is not None else ())],
    }


def _provision_values(device: Device) -> dict:
    """What the provisioning sources (templates/common/src/provisioning.*) need: the protocol's topics and limits
    (generator.provision.protocol) and the credentials partition (generator.firmware.nvs_image)."""
    topics = {f"{name}_format": c_string_literal(topic("%s", channel))
              for name, topic, channel in (("bootstrap_request", request_topic, "bootstrap"),
                                           ("bootstrap_response", response_topic, "bootstrap"),
                                           ("request", request_topic, "operational"),
                                           ("response", response_topic, "operational"))}
    return {
        "partition": c_string_literal(CREDENTIALS_PARTITION),
        "namespace": c_string_literal(CREDENTIALS_NAMESPACE),
        "partition_offset": f"{CREDENTIALS_PARTITION_OFFSET[device.framework]:#x}",
        "partition_size": f"{CREDENTIALS_PARTITION_SIZE:#x}",
        "request_max": REQUEST_MAX_BYTES,
        "response_max": RESPONSE_MAX_BYTES,
        "request_id_digits": REQUEST_ID_HEX_DIGITS,
        "topic_capacity": len(response_topic("x" * MAX_CLIENT_ID, "bootstrap")) + 1,
        "bootstrap_suffix": BOOTSTRAP_USER_SUFFIX,
        **topics,
    }


def _ini_value(text: str) -> str:
    """A catalogue option as platformio.ini text: extra lines of a multi-line value are indented."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return "\n".join([""] + [f"    {line}" for line in lines if line.strip()])


_GENERATED = {
    "arduino": ("platformio.ini", "partitions.csv", "src/main.cpp", "src/app.cpp", "src/config.h", "src/app.h",
                "src/date_checking_client.h", "src/topic_filter.h", "test/test_device.py"),
    "espidf": ("platformio.ini", "partitions.csv", "sdkconfig.defaults", "CMakeLists.txt", "src/CMakeLists.txt",
               "src/main.c", "src/app.c", "src/config.h", "src/app.h", "src/topic_filter.h", "test/test_device.py"),
}
# With `ota:`, the update handler (its own sources, so main.* only calls it).
_GENERATED_FOR_OTA = {
    "arduino": ("src/ota_update.h", "src/ota_update.cpp", "src/ota_config.h", "src/ota_common.h", "src/version_order.h",
                "src/ota_version_record.h"),
    "espidf": ("src/ota_update.h", "src/ota_update.c", "src/ota_config.h", "src/ota_common.h", "src/version_order.h"),
}


# A device that makes its own key also gets these (both flavours, from templates/common/src/).
PROVISIONING_SOURCES = ("src/device_key.h", "src/device_key.c", "src/provisioning.h", "src/provisioning.c")


def render_firmware(device: Device, credentials: ClientCredentials, *, spec_name: str = "the device spec",
                    app_include: str | None = None, ota_key_digest: bytes | None = None) -> FirmwareProject:
    """The device's PlatformIO project. `spec_name` (e.g. "device.yaml") is named in every generated file's
    header; keep it the same for every device of a fleet so their `secrets: nvs` projects stay identical.
    `app_include` is where the user's app source lies, relative to the project's src/ (`app_include_path`);
    by default, where it lies when OUT is the spec folder's build/. `ota_key_digest`: with `ota:`, the digest of the
    project's signing key (generator.ota.signing.key_digest), which the Arduino firmware checks signatures against."""
    flavour = device.framework
    values = _template_values(device, credentials, spec_name, app_include or DEFAULT_APP_INCLUDE[flavour],
                              ota_key_digest)
    paths = list(_GENERATED[flavour]) + (list(_GENERATED_FOR_OTA[flavour]) if device.ota is not None else [])
    if device.makes_own_key:
        paths += PROVISIONING_SOURCES
    if device.secrets == "embed":
        paths.append("src/credentials.h")
    generated = {path: _render(flavour, path, values) for path in paths}
    secret_files = frozenset(path for path in SECRET_FILES if path in generated)
    return FirmwareProject(generated=generated, env_name=device.target.name, secret_files=secret_files)


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
    """The user's app source a generated project compiles: what its src/app.* includes."""
    shim = Path(firmware_dir) / USER_APP_SOURCE[framework]
    try:
        match = re.search(r'^#include "([^"]+)"', shim.read_text(encoding="utf-8"), re.MULTILINE)
    except OSError:
        return None
    return (shim.parent / match.group(1)).resolve() if match else None


def missing_app_functions(linker_output: str, firmware_dir: Path, framework: str) -> UserError | None:
    """When the link failed because the user's app source lacks functions app.h declares (the spec gained a
    publish or subscribe entry), the error that names each one with the declaration to add; else None."""
    names = list(dict.fromkeys(_UNDEFINED_APP_FUNCTION.findall(linker_output)))
    if not names:
        return None
    try:
        header = (Path(firmware_dir) / "src" / "app.h").read_text(encoding="utf-8").splitlines()
    except OSError:
        header = []
    declarations = []
    for name in names:
        line = next((text.strip() for text in header if re.search(rf"\b{name}\(", text)), f"{name}(...);")
        declarations.append("  " + line)
    app = user_app_path(firmware_dir, framework) or USER_APP_SOURCE[framework]
    count = "function" if len(names) == 1 else "functions"
    return UserError(f"your app code ({app}) lacks {len(names)} {count} the spec now needs, declared in "
                     f"{Path(firmware_dir) / 'src' / 'app.h'}:\n" + "\n".join(declarations),
                     hint=f"define {'it' if len(names) == 1 else 'them'} in {app}; the comment above each "
                          "declaration in app.h says what it must do")


def _render(flavour: str, path: str, values: dict) -> bytes:
    """templates/<flavour>/<path>.j2, or templates/common/<path>.j2 for a file both flavours share."""
    own = f"{flavour}/{path}.j2"
    template = own if (TEMPLATES_DIR / own).is_file() else f"common/{path}.j2"
    return render_template(template, **values).encode("utf-8")
