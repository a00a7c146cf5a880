"""The per-device NVS partition of `secrets: nvs`: what it holds (the keys the firmware reads) and the image.

With `secrets: nvs` the app image is the same for every device of a target; everything that tells one device from
another lives here: its id, WiFi credentials, MQTT password, CA, client cert and key, its expanded topics, and its
values of the spec's `vars:` (as text).
The image is written with esp-idf-nvs-partition-gen's in-process API (format version 2), so it is exactly what
`nvs_flash`/`Preferences` read on the device. `generator.firmware.nvs_reader` reads it back for tests.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from generator.core.errors import UserError
from generator.pki.credentials import ClientCredentials
from generator.spec.device_limits import NVS_PASSWORD_CAPACITY
from generator.spec.model import Device

NVS_NAMESPACE = "gen"
NVS_KEY_MAX = 15                     # characters, NVS_KEY_NAME_MAX_SIZE - 1
NVS_STRING_MAX = 4000                # bytes including the NUL
NVS_PAGE_SIZE = 4096
NVS_PARTITION_OFFSET = 0x9000        # the partition tables of both flavours put nvs here (the IDF default)
NVS_PARTITION_SIZES = {              # Arduino keeps otadata at 0xe000 (where its upload writes boot_app0.bin)
    "arduino": 0x5000,
    "espidf": 0x6000,
}

# The keys the firmware reads (both flavours); PEM text is stored as NUL-terminated blobs (no 4000-byte limit).
KEY_DEVICE_ID = "device_id"
KEY_WIFI_SSID = "wifi_ssid"
KEY_WIFI_PASSWORD = "wifi_pass"
KEY_MQTT_PASSWORD = "mqtt_pass"
KEY_CA_PEM = "ca_pem"
KEY_CERT_PEM = "cert_pem"
KEY_KEY_PEM = "key_pem"
KEY_STATUS_TOPIC = "status_topic"
KEY_OTA_TOPIC = "ota_topic"          # with ota: (generator.ota)
KEY_FIRMWARE_TOPIC = "fw_topic"
KEY_BOOTSTRAP_PASSWORD = "boot_pass"    # a device that makes its own key: its first-boot login

# A device that makes its own key keeps its key and certificates in a partition of its own, which the device
# writes and nothing gen flashes touches: a new nvs.bin (settings) never erases an identity. It lies at the end
# of the flash, after every region `gen build` merges (a merged image's 0xFF padding cannot reach it).
CREDENTIALS_PARTITION = "gen_cred"
CREDENTIALS_NAMESPACE = "gen_cred"
CREDENTIALS_PARTITION_SIZE = 0x6000
CREDENTIALS_PARTITION_OFFSET = {"arduino": 0x3EA000, "espidf": 0x3FA000}   # Arduino: the end of spiffs


def device_nvs_partitions(device: Device) -> tuple[str, ...]:
    """The NVS partitions of the device's partition table besides `nvs` (partitions.csv)."""
    return (CREDENTIALS_PARTITION,) if device.makes_own_key else ()


def publish_topic_key(index: int) -> str:
    return f"pub_{index}"


def subscribe_filter_key(index: int) -> str:
    return f"sub_{index}"


def var_key(index: int) -> str:
    return f"var_{index}"


def var_text(value: str | int | bool) -> str:
    """A var's value as the firmware reads it from NVS: the text, a decimal integer, or 1/0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def nvs_partition_size(framework: str) -> int:
    return NVS_PARTITION_SIZES[framework]


@dataclass(frozen=True)
class NvsEntry:
    key: str
    value: str | bytes               # str: an NVS string (SZ); bytes: a blob
    secret: bool = False


def device_nvs_entries(device: Device, credentials: ClientCredentials) -> tuple[NvsEntry, ...]:
    """Everything the `secrets: nvs` firmware reads from namespace NVS_NAMESPACE, in the order it is written."""
    entries = [
        NvsEntry(KEY_DEVICE_ID, device.id),
        NvsEntry(KEY_WIFI_SSID, device.wifi.ssid),
        NvsEntry(KEY_WIFI_PASSWORD, device.wifi.password, secret=True),
    ]
    if device.uses_password:
        entries.append(NvsEntry(KEY_MQTT_PASSWORD, _required(credentials.password, "an MQTT password", device),
                                secret=True))
    entries.append(NvsEntry(KEY_CA_PEM, _pem_blob(credentials.ca_pem)))
    if device.makes_own_key:
        entries.append(NvsEntry(KEY_BOOTSTRAP_PASSWORD, _required(credentials.bootstrap_password,
                                                                   "a bootstrap password", device), secret=True))
    elif device.uses_client_cert:
        entries.append(NvsEntry(KEY_CERT_PEM, _pem_blob(_required(credentials.cert_pem, "a client cert", device))))
        entries.append(NvsEntry(KEY_KEY_PEM, _pem_blob(_required(credentials.key_pem, "a client key", device)),
                                secret=True))
    entries.append(NvsEntry(KEY_STATUS_TOPIC, device.status.topic))
    entries += [NvsEntry(publish_topic_key(i), p.topic) for i, p in enumerate(device.publish)]
    entries += [NvsEntry(subscribe_filter_key(i), s.filter) for i, s in enumerate(device.subscribe)]
    if device.ota is not None:
        entries += [NvsEntry(KEY_OTA_TOPIC, device.ota.topic), NvsEntry(KEY_FIRMWARE_TOPIC, device.ota.firmware_topic)]
    entries += [NvsEntry(var_key(i), var_text(var.value)) for i, var in enumerate(device.vars)]
    _check_fits(device, entries)
    return tuple(entries)


def render_nvs_image(device: Device, credentials: ClientCredentials, *, xts_key: bytes | None = None) -> bytes:
    """The device's NVS partition image (NVS_PARTITION_SIZES[framework] bytes), flashed at NVS_PARTITION_OFFSET;
    with `xts_key` (the XTS-AES data key and tweak key, 64 bytes), every entry encrypted by esp-idf-nvs-partition-gen
    as its `encrypt` command does (generator.firmware.security)."""
    if device.secrets != "nvs":
        raise ValueError(f"device {device.id} embeds its secrets; it has no NVS image")
    entries = device_nvs_entries(device, credentials)
    size = nvs_partition_size(device.framework)
    out = io.BytesIO()
    from esp_idf_nvs_partition_gen import nvs_partition_gen  # imported when an image is made

    # The tool reserves one page for NVS garbage collection; it is given the rest.
    nvs = nvs_partition_gen.nvs_open(out, size - NVS_PAGE_SIZE, nvs_partition_gen.Page.VERSION2,
                                     is_encrypt=xts_key is not None, key=xts_key)
    try:
        nvs_partition_gen.write_entry(nvs, NVS_NAMESPACE, "namespace", "", "")
        for entry in entries:
            if isinstance(entry.value, bytes):
                nvs_partition_gen.write_entry(nvs, entry.key, "data", "binary", entry.value)
            else:
                nvs_partition_gen.write_entry(nvs, entry.key, "data", "string", entry.value)
        nvs_partition_gen.nvs_close(nvs)
    except nvs_partition_gen.InsufficientSizeError:
        raise UserError(
            f"device {device.id}: its credentials and topics do not fit the {size:#x}-byte NVS partition",
            hint="use ec-p256 keys (much shorter than RSA), a shorter CA chain, or fewer/shorter topics") from None
    image = out.getvalue()
    if len(image) != size:
        raise AssertionError(f"NVS image is {len(image)} bytes, expected {size}")
    return image


def _pem_blob(pem: bytes) -> bytes:
    if b"\0" in pem:
        raise UserError("a PEM credential contains a NUL byte", hint="regenerate it with `gen pki`")
    return pem + b"\0"                # mbedTLS parses PEM only when it ends in a NUL


def _required(value, what: str, device: Device):
    if value is None:
        raise UserError(f"device {device.id} uses auth {device.auth!r} but the PKI gave it no {what}",
                        hint="run `gen generate` again so the PKI issues it")
    return value


def _check_fits(device: Device, entries: list[NvsEntry]) -> None:
    for entry in entries:
        if len(entry.key) > NVS_KEY_MAX:
            raise AssertionError(f"NVS key {entry.key!r} is longer than {NVS_KEY_MAX} characters")
        if isinstance(entry.value, str) and len(entry.value.encode()) + 1 > NVS_STRING_MAX:
            raise UserError(f"device {device.id}: {entry.key} is {len(entry.value.encode())} bytes; an NVS string "
                            f"holds at most {NVS_STRING_MAX - 1}")
    for entry in entries:
        if entry.key == KEY_MQTT_PASSWORD and len(str(entry.value).encode()) > NVS_PASSWORD_CAPACITY:
            raise UserError(f"device {device.id}: the MQTT password is longer than {NVS_PASSWORD_CAPACITY} bytes")
