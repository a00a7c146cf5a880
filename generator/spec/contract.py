"""Facts several concepts share, in one place, so that nobody imports a higher layer to learn them: the kinds of
identity that connect to the broker, the key types the PKI issues, the length of a generated MQTT password, what a
WiFi network accepts. The spec checks against them, the PKI issues by them, the renderers write them into the
broker's ACL and the firmware. (Topics: generator.core.topics; the provisioning topics and wire format:
generator.spec.provisioning_protocol; what the firmware can carry: generator.spec.device_limits.)"""

from __future__ import annotations

import re

AUTH_MODES = ("mtls", "password", "mtls+password")
SECRETS_MODES = ("embed", "nvs")
KEY_ORIGINS = ("host", "device")
BROKER_ENGINES = ("mosquitto", "rabbitmq")

# Identity kinds: who connects to the broker besides the devices.
BACKEND_IDENTITY = "backend"  # the server-side identity that reads and writes every device topic
# gen doctor's own server-side identity (a '.' no device id can have). The broker binds each client id to its user
# name, so two connections of one identity replace each other: the doctor must not log in as your backend.
DOCTOR_IDENTITY = "gen.doctor"
SERVER_IDENTITIES = (BACKEND_IDENTITY, DOCTOR_IDENTITY)
# With `ota:`, gen ota publish and gen ota status have an identity of their own too (never your backend's): it may
# write every device's OTA topic and read what the devices report.
OTA_IDENTITY = "gen.ota"
# `gen provision serve`'s own identity: it reads the devices' certificate requests and answers them, nothing else.
PROVISIONER_IDENTITY = "gen.provisioner"
# `gen broker apply`'s own identity (a broker gen runs): it may send the dynamic-security plugin's commands that end
# live sessions (of a revoked, re-keyed or removed identity), nothing else.
ADMIN_IDENTITY = "gen.admin"
# `gen logs`' own identity (with `log:` on some device): it may read the devices' log topics, nothing else. Its own
# client id, so following a log never kicks an operator's mosquitto_sub or the backend off the broker.
LOGS_IDENTITY = "gen.logs"
# The spec's log.level, lowest first: a line is published when its level is at least as severe as this one.
LOG_LEVELS = ("none", "error", "warn", "info", "debug")

# The PKI's key types (the schema's enum is held equal to this by a test).
KEY_TYPES = ("ec-p256", "rsa-2048")
DEFAULT_KEY_TYPE = "ec-p256"
MQTT_PASSWORD_LENGTH = 32           # characters of a generated MQTT password (URL-safe base64 of 24 random bytes)

# What a WiFi network accepts (IEEE 802.11: an SSID is 0-32 octets; WPA2-PSK: 8-63 printable characters, or the
# 256-bit PSK as 64 hex digits).
WIFI_SSID_MAX_BYTES = 32
WPA2_PASSPHRASE_MIN, WPA2_PASSPHRASE_MAX = 8, 63
WPA2_PSK_HEX_DIGITS = 64            # the longest WiFi password: what the firmware's buffer holds, NUL apart
_WPA2_HEX_PSK = re.compile(rf"[0-9A-Fa-f]{{{WPA2_PSK_HEX_DIGITS}}}")


def wpa2_password_fits(password: str) -> bool:
    """A WPA2 passphrase of 8 to 63 characters, or a 64-hex-digit PSK."""
    return WPA2_PASSPHRASE_MIN <= len(password) <= WPA2_PASSPHRASE_MAX or bool(_WPA2_HEX_PSK.fullmatch(password))
