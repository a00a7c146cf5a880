"""The Spec: typed, immutable, every default filled in and `{id}` expanded per device.

Everything downstream (PKI, broker, firmware, build, simulate, doctor) reads these objects, never the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.core.errors import UserError
from generator.core.paths import OUT_DIR_NAME
from generator.spec.catalogue import Target
from generator.spec.contract import (
    ADMIN_IDENTITY,
    AUTH_MODES,
    LOGS_IDENTITY,
    OTA_IDENTITY,
    SERVER_IDENTITIES,
)


@dataclass(frozen=True)
class Wifi:
    ssid: str
    password: str


@dataclass(frozen=True)
class Broker:
    host: str                      # the name devices dial; the broker cert's CN
    names: tuple[str, ...]         # host first, then the extra names: every name the broker cert carries
    port: int
    plaintext_port: int | None
    max_connections: int | None = None   # None: generator.broker.default_max_connections(spec)
    ca_file: Path | None = None          # absolute: the CA devices trust for the broker, instead of the PKI's root
    cert_file: Path | None = None        # absolute: a broker certificate (+ chain) from elsewhere ...
    key_file: Path | None = None         # ... and its key: gen issues no broker certificate
    external: bool = False               # a broker gen does not run: no broker config, no broker certificate
    provision_port: int = 8884           # the bootstrap TLS listener (only opened when a device makes its own key)
    engine: str = "mosquitto"            # BROKER_ENGINES: one Mosquitto process, or a RabbitMQ cluster
    nodes: tuple[str, ...] = ()          # engine rabbitmq: the cluster's node host names, in the devices' dial order

    @property
    def clustered(self) -> bool:
        """A RabbitMQ cluster: the devices carry every node's name and move to the next one on a failure."""
        return self.engine == "rabbitmq"

    @property
    def dial_hosts(self) -> tuple[str, ...]:
        """The hosts a device dials, in order: each cluster node, or the one broker host."""
        return self.nodes if self.clustered else (self.host,)

    @property
    def issues_cert(self) -> bool:
        """Whether the project's PKI issues the broker's certificate: not when devices trust another CA for it."""
        return not self.external and self.ca_file is None


@dataclass(frozen=True)
class Status:
    topic: str
    online: str
    offline: str


@dataclass(frozen=True)
class LogSettings:
    """The device's log over MQTT (the spec's `log:`): the lines its serial log shows, at `level` and more severe,
    published to `topic` (QoS 0, not retained), at most `rate` lines a second after a burst of `burst`; lines dropped
    by the limit are counted and said in the next line that goes out."""

    level: str          # one of LOG_LEVELS but "none" (None on the Device: off)
    topic: str
    topic_template: str  # as the spec writes it ({id} unexpanded): the firmware expands it with its own id
    rate: int           # lines per second, sustained
    burst: int          # lines at once


@dataclass(frozen=True)
class Publish:
    name: str
    topic: str
    qos: int
    retain: bool
    interval: int       # seconds; 0 = only when the firmware asks
    max_payload: int


@dataclass(frozen=True)
class Subscribe:
    name: str
    filter: str
    qos: int
    max_payload: int


@dataclass(frozen=True)
class PkiOptions:
    dir: Path                      # absolute
    key_type: str
    validity_days: int
    ca_validity_days: int
    ca_passphrase_env: str | None


@dataclass(frozen=True)
class Ota:
    """Updates over the air (the spec's `ota:`), as one device sees them: topics expanded for it."""

    port: int                      # gen ota serve's port; the device fetches https://<broker.host>:<port>/...
    topic: str                     # announcements to this device (only the backend writes it)
    firmware_topic: str            # the device's retained report: running version, state of an update
    confirm_timeout: int           # seconds a new image has to reach the broker before it is rolled back
    project: str                   # the spec's project: an announcement for another one is refused


FLASH_ENCRYPTION_MODES = ("off", "development", "release")
SECURE_BOOT_MODES = ("off", "v2")


@dataclass(frozen=True)
class Security:
    """Secrets at rest on the device (the spec's `security:`), generator.firmware.security renders it."""

    flash_encryption: str = "development"   # off | development | release (release only when written)
    secure_boot: str = "off"                # off | v2 (signed with the project's OTA signing key)
    nvs_encryption: bool = False            # the NVS partition XTS-AES encrypted
    secure_version: int | None = None       # the eFuse secure version (anti-rollback), None: no anti-rollback
    # What protects the NVS encryption keys: hmac (derived from a key in an eFuse block, chips with the HMAC
    # peripheral) or flash_encryption (kept in the flash encrypted nvs_keys partition); the spec resolves it from the
    # chip. None with nvs_encryption: flash_encryption.
    nvs_key_protection: str | None = None
    # UART ROM download mode after flashing: enabled | secure (Secure Download Mode) | disabled (permanently);
    # None: what ESP-IDF's Kconfig defaults to (secure with release flash encryption on chips that have it).
    rom_download_mode: str | None = None

    @property
    def encrypts_flash(self) -> bool:
        return self.flash_encryption != "off"

    @property
    def nvs_keys_from_hmac(self) -> bool:
        """The NVS encryption keys are derived from the HMAC key in eFuse (no nvs_keys partition)."""
        return self.nvs_encryption and self.nvs_key_protection == "hmac"

    @property
    def nvs_keys_partition(self) -> bool:
        """The NVS encryption keys are kept in the nvs_keys partition, protected by flash encryption."""
        return self.nvs_encryption and self.nvs_key_protection != "hmac"


@dataclass(frozen=True)
class Library:
    """A library the app uses (the spec's `libraries:`): from the registry, or a folder of the user's."""

    entry: str                     # as written: owner/name@version, or ./path
    path: Path | None = None       # absolute: a local folder (a PlatformIO library or an ESP-IDF component)

    @property
    def name(self) -> str:
        """The local folder's name, or the registry name without its owner and version."""
        if self.path is not None:
            return self.path.name
        return self.entry.split("@", 1)[0].strip().rsplit("/", 1)[-1].strip()

    @property
    def registry_name(self) -> str:
        """owner/name of a registry library (no version)."""
        return self.entry.split("@", 1)[0].strip()

    @property
    def version(self) -> str | None:
        return self.entry.split("@", 1)[1].strip() if "@" in self.entry else None


VAR_TYPES = {bool: "bool", int: "int", str: "string"}
VAR_STRING_MAX = 255                 # bytes of a string var (the firmware's buffer for one read from NVS)
VAR_INT_RANGE = (-2**31, 2**31 - 1)  # an int var is an int32_t


@dataclass(frozen=True)
class Var:
    """One of the spec's `vars:`, with this device's value."""

    name: str                      # a C identifier
    value: str | int | bool

    @property
    def type(self) -> str:
        """bool, int or string."""
        return VAR_TYPES[type(self.value)]


@dataclass(frozen=True)
class DevicePki:
    key_type: str
    validity_days: int
    key_origin: str = "host"       # "host": gen makes the key; "device": the device does, and sends a CSR
    renew_before_days: int = 275   # key_origin device: renew this many days before the certificate expires


@dataclass(frozen=True)
class Device:
    id: str
    target: Target
    wifi: Wifi
    broker: Broker
    auth: str
    secrets: str
    keepalive: int
    ntp: tuple[str, ...]
    status: Status
    publish: tuple[Publish, ...]
    subscribe: tuple[Subscribe, ...]
    pki: DevicePki
    firmware_version: str = "0.0.0"     # firmware.version, else the project's git describe
    ota: Ota | None = None              # None: no updates over the air
    libraries: tuple[Library, ...] = ()  # the spec's libraries:
    build_flags: tuple[str, ...] = ()   # the spec's build_flags:
    vars: tuple[Var, ...] = ()          # the spec's vars:, with this device's values
    security: Security | None = None    # the spec's security:, None: nothing at rest is protected
    log: LogSettings | None = None      # None: the log stays on the serial port (log.level: none, the default)

    @property
    def framework(self) -> str:
        return self.target.framework

    @property
    def board(self) -> str:
        return self.target.board

    @property
    def chip(self) -> str:
        return self.target.chip

    @property
    def client_id(self) -> str:
        return self.id

    @property
    def username(self) -> str:
        # With mtls, Mosquitto's use_identity_as_username makes the cert CN (= the id) the username.
        return self.id

    @property
    def c_name(self) -> str:
        """The id as a C identifier suffix ('-' becomes '_'); unique within a spec (checked)."""
        return self.id.replace("-", "_")

    @property
    def uses_client_cert(self) -> bool:
        return self.auth in ("mtls", "mtls+password")

    @property
    def uses_password(self) -> bool:
        return self.auth in ("password", "mtls+password")

    @property
    def makes_own_key(self) -> bool:
        """The device makes its key on first boot and gets its certificate by a CSR (generator.provision)."""
        return self.pki.key_origin == "device"


@dataclass(frozen=True)
class Client:
    """A named identity besides the devices (spec `clients:`): an operator's mosquitto_sub, a dashboard. It has its
    own certificate and password, logs in with its name (which is its client id: the broker binds them), and may read
    what `subscribe` lists and write what `publish` lists, nothing else; never gen's OTA or provisioning topics."""

    name: str
    subscribe: tuple[str, ...] = ()    # topic filters it may read
    publish: tuple[str, ...] = ()      # topics (or filters) it may write; none: read-only


@dataclass(frozen=True)
class Spec:
    path: Path                     # the spec file, absolute
    project: str
    broker: Broker
    pki: PkiOptions
    devices: tuple[Device, ...]
    clients: tuple[Client, ...] = ()

    @property
    def server_identities(self) -> tuple[str, ...]:
        """The server-side identities the PKI issues and the broker knows: the backend, gen doctor, with `ota:`
        gen's OTA publisher, for a broker gen runs its session administrator (gen broker apply), and the spec's
        own `clients:`."""
        return (SERVER_IDENTITIES + ((OTA_IDENTITY,) if self.ota_port is not None else ())
                + (() if self.broker.external else (ADMIN_IDENTITY,))
                + ((LOGS_IDENTITY,) if any(d.log is not None for d in self.devices) else ())
                + tuple(c.name for c in self.clients))

    def client(self, name: str) -> Client | None:
        return next((c for c in self.clients if c.name == name), None)

    @property
    def ota_port(self) -> int | None:
        """The port `gen ota serve` listens on, or None when the spec has no `ota:`."""
        return next((device.ota.port for device in self.devices if device.ota is not None), None)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def default_out_dir(self) -> Path:
        return self.directory / OUT_DIR_NAME

    @property
    def provisions_devices(self) -> bool:
        """Some device makes its own key: the broker opens the bootstrap listener, `gen provision serve` signs."""
        return any(device.makes_own_key for device in self.devices)

    @property
    def auth_modes(self) -> tuple[str, ...]:
        return tuple(sorted({d.auth for d in self.devices}, key=AUTH_MODES.index))

    def device(self, device_id: str) -> Device:
        for device in self.devices:
            if device.id == device_id:
                return device
        known = ", ".join(d.id for d in self.devices)
        raise UserError(f"{self.path} has no device {device_id!r}", hint=f"use one of: {known}")
