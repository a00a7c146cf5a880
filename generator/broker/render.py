"""The broker side: Mosquitto 2.0 configuration, password file and ACL, rendered from the Spec and its credentials.

Pure functions, no I/O: `render_broker(spec, credentials)` returns every file of OUT/broker/ with its mode.
`generator.broker.runner` runs the real broker from these files.

Decisions (tested against Mosquitto 2.0.11, see ../shared/reference/mosquitto.md):
- `per_listener_settings true`: every `listener` block names its own `allow_anonymous false`, `password_file` and
  `acl_file` (a listener without an acl_file would allow every topic). The device listener (and the plaintext one)
  share one password file and ACL; the bootstrap listener (only when a device makes its own key) has its own,
  which admit nothing but first-boot certificate requests. A listener serves TLS only when both certfile and
  keyfile are set (otherwise it silently serves plaintext), so both are always written together.
- mtls: `require_certificate true` + `use_identity_as_username true` (the cert CN, i.e. the device id, is the
  username; a password sent in CONNECT is ignored). password: `password_file`, no client cert.
  mtls+password: `require_certificate true` (the cert proves it is one of ours) plus `password_file` (the
  password says which device); Mosquitto alone cannot bind the cert CN to the username.
- `crlfile` whenever client certs are verified: Mosquitto needs a CRL (even an empty one) from the issuing CA once
  a crlfile is set, and it keeps `gen pki revoke` + SIGHUP working without touching the config.
- Mosquitto does not resolve relative paths against the config's directory, so the config names absolute paths
  under INSTALL_DIR, where the operator README installs the files. The runner rewrites them in its private copy.
- Password file: `$7$` lines (PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash) written by our own code, with
  PASSWORD_ITERATIONS iterations (the broker reads the count from each line).
- ACL: one `user` section per identity, explicit `topic` lines, no `pattern` (nothing is derived from what a
  client sends). Anything that would break an ACL line never reaches it.
- Ending live sessions: Mosquitto re-checks no live TLS session on SIGHUP (a revoked certificate stays connected),
  and 2.0.11 has no admin command of its own. The device listener loads the dynamic-security plugin only for its
  kick: `gen broker apply` (as ADMIN_IDENTITY, the only one the ACL lets write CONTROL_TOPIC) creates a dynsec
  client of that name and deletes it, and deleteClient disconnects every session of that username (observed with
  2.0.11: disableClient kicks too, but an identity login never consults the plugin, so it reconnects at once; the
  CRL is what keeps it out). The plugin holds no client, role or ACL of ours: it defers to acl_file and
  password_file for every client it does not know (plugins/dynamic-security/acl.c, auth.c at v2.0.11).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable

from generator.broker.client_lines import client_command_lines
from generator.core.errors import UserError
from generator.core.rendering import render_template
from generator.core.topics import by_first_level, common_topic_prefix
from generator.pki.ca import CRL_RESIGN_FRACTION, CRL_VALIDITY_DAYS
from generator.pki.credentials import BrokerCredentials
from generator.spec.contract import (
    ADMIN_IDENTITY,
    BACKEND_IDENTITY,
    DOCTOR_IDENTITY,
    LOGS_IDENTITY,
    OTA_IDENTITY,
    PROVISIONER_IDENTITY,
)
from generator.spec.device_limits import NVS_PASSWORD_CAPACITY, mqtt_buffer_size
from generator.spec.model import Client, Device, Spec
from generator.spec.provisioning_protocol import (
    CHANNELS,
    REQUEST_FILTERS,
    bootstrap_username,
    request_topic,
    response_topic,
)

INSTALL_DIR = PurePosixPath("/etc/mosquitto/gen")
TLS_MIN_VERSION = "tlsv1.2"
# TLS 1.2 suites: forward secret, AEAD only (no CBC, no static RSA). mbedTLS 2.28 (Arduino-ESP32 2.0.x, ESP-IDF)
# and OpenSSL both offer them; for ECDSA broker keys the ECDSA ones apply, for RSA keys the RSA ones. TLS 1.3
# suites are all AEAD already (OpenSSL's default set stays).
TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
                 "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305")
CONNECTIONS_PER_DEVICE = 2     # a device that reconnects before the broker has noticed its old connection died
SPARE_CONNECTIONS = 64         # the backend, gen doctor, an operator's mosquitto_sub
OPEN_FILES_SPARE = 1024        # descriptors beyond max_connections: logs, persistence, listeners
PACKET_SIZE_STEP = 1024        # max_packet_size is rounded up to whole KiB: room for a backend's own packets
MIN_MAX_KEEPALIVE_S = 60       # what a backend (paho's default) uses
PASSWORD_ITERATIONS = 10_000
PASSWORD_SALT_BYTES = 12      # Mosquitto rejects any other salt length
PASSWORD_HASH_BYTES = 64

# The files of OUT/broker/, by role. The config names them under INSTALL_DIR.
CONF_FILE = "mosquitto.conf"
CA_FILE = "ca.pem"
CERT_FILE = "broker.pem"
KEY_FILE = "broker.key"
CRL_FILE = "crl.pem"
PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
BOOTSTRAP_PASSWORD_FILE = "bootstrap.passwd"   # devices that make their own key and have no certificate yet
BOOTSTRAP_ACL_FILE = "bootstrap.acl"
README_FILE = "README.md"
SECRET_FILES = (KEY_FILE, PASSWORD_FILE, BOOTSTRAP_PASSWORD_FILE)
BOOTSTRAP_SPARE_CONNECTIONS = 10   # beyond one per device waiting: a device that reconnects before its old one died
# Config options whose value is one of the files above: what the runner rewrites for its private copy.
PATH_OPTIONS = ("cafile", "certfile", "keyfile", "crlfile", "password_file", "acl_file")
# The dynamic-security plugin (only its session kick is used): the config names it under INSTALL_DIR, where the
# README links the distribution's file (Debian: /usr/lib/<arch>/mosquitto_dynamic_security.so). Its state file
# must be in a directory the broker's user may write (it saves by rename): Debian's persistence directory.
DYNSEC_PLUGIN_FILE = "dynamic-security.so"
DYNSEC_STATE_DIR = PurePosixPath("/var/lib/mosquitto")
PLUGIN_OPTION = "plugin"
PLUGIN_STATE_OPTION = "plugin_opt_config_file"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

_SECRET_MODE = 0o600
_PUBLIC_MODE = 0o644
# A username or topic that could break an acl_file or password_file line, or act as a wildcard in one.
_UNSAFE_USERNAME = re.compile(r"[\s+#:/\x00-\x1f\x7f]")
_UNSAFE_TOPIC = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BrokerFiles:
    files: dict[str, bytes]        # relative path under OUT/broker/ -> content
    modes: dict[str, int]          # relative path -> file mode


@dataclass(frozen=True)
class AclRule:
    access: str                    # "read" | "write" | "readwrite"
    topic: str                     # a topic name or filter


@dataclass(frozen=True)
class AclSection:
    username: str
    rules: tuple[AclRule, ...]


# ---------------------------------------------------------------------------------------------- the whole set


def render_broker(spec: Spec, credentials: BrokerCredentials) -> BrokerFiles:
    """Every file of OUT/broker/ for this spec, with modes (the key and the password file 0600). For a broker gen
    does not run (broker.external): no config, only what its operator needs from us (our CA and CRL, a README)."""
    files: dict[str, bytes] = {README_FILE: render_operator_readme(spec)}
    if not spec.broker.external:
        files[CONF_FILE] = render_mosquitto_conf(spec)
        files[ACL_FILE] = render_acl(spec)
        if credentials.cert_pem is not None and credentials.key_pem is not None:
            files[CERT_FILE] = credentials.cert_pem
            files[KEY_FILE] = credentials.key_pem
    if verifies_client_certs(spec):
        files[CA_FILE] = credentials.cafile_pem
        files[CRL_FILE] = credentials.crl_pem
    if uses_password_file(spec) and not spec.broker.external:
        files[PASSWORD_FILE] = render_password_file(credentials.passwords, salt_key=credentials.salt_key)
    if spec.provisions_devices and not spec.broker.external:
        files[BOOTSTRAP_PASSWORD_FILE] = render_password_file(credentials.bootstrap_passwords,
                                                              salt_key=credentials.salt_key)
        files[BOOTSTRAP_ACL_FILE] = render_bootstrap_acl(spec)
    modes = {name: (_SECRET_MODE if name in SECRET_FILES else _PUBLIC_MODE) for name in files}
    return BrokerFiles(files=files, modes=modes)


def check_runnable_here(spec: Spec, broker_dir) -> None:
    """The generated broker can run on this machine (gen broker up, gen simulate): gen runs it, and has its cert."""
    if spec.broker.external:
        raise UserError(f"{spec.path} targets a broker gen does not run (broker.external), so there is none to start",
                        hint="dial the real one (gen simulate --broker HOST:PORT), or remove broker.external")
    if not (broker_dir / CERT_FILE).is_file() or not (broker_dir / KEY_FILE).is_file():
        raise UserError(f"the broker's certificate comes from elsewhere (broker.ca_file), and {broker_dir} has no "
                        f"{CERT_FILE} and {KEY_FILE} to serve",
                        hint="set broker.cert_file and broker.key_file in the spec, or copy them there as those names")


def verifies_client_certs(spec: Spec) -> bool:
    return any(device.uses_client_cert for device in spec.devices)


def uses_password_file(spec: Spec) -> bool:
    return any(device.uses_password for device in spec.devices)


def auth_mode(spec: Spec) -> str:
    """The spec's one auth mode (a spec rule: every device of a spec uses the same)."""
    modes = spec.auth_modes
    assert len(modes) == 1, f"a spec has one auth mode, got {modes}"
    return modes[0]


# ---------------------------------------------------------------------------------------------- limits


def max_packet_size(spec: Spec) -> int:
    """The largest MQTT packet a device of the spec sends or receives, by the firmware's own buffer rule (with a
    password of the most bytes any can have), rounded up to whole KiB. Mosquitto disconnects a client that sends a
    bigger packet as soon as it has read the packet's length, before it reads or logs any of it."""
    largest = max(mqtt_buffer_size(device, password_length=NVS_PASSWORD_CAPACITY if device.uses_password else 0)
                  for device in spec.devices)
    return -(-largest // PACKET_SIZE_STEP) * PACKET_SIZE_STEP


def max_connections(spec: Spec) -> int:
    """The listener's connection cap: the spec's broker.max_connections, else two per device plus spares. It counts
    connections still in their TLS handshake too, so it bounds what unauthenticated clients can hold open."""
    if spec.broker.max_connections is not None:
        return spec.broker.max_connections
    return CONNECTIONS_PER_DEVICE * len(spec.devices) + SPARE_CONNECTIONS


def open_files_limit(spec: Spec) -> int:
    """LimitNOFILE for the broker's systemd unit: one descriptor per connection, and spares."""
    return max_connections(spec) + OPEN_FILES_SPARE


def max_keepalive(spec: Spec) -> int:
    """The longest keepalive a client may use: the slowest device's, at least a backend's 60 s. Mosquitto 2.0.11
    enforces it for MQTT 5 clients only (it tells them a server keepalive); 3.1.1 clients keep their own."""
    return max(MIN_MAX_KEEPALIVE_S, *(device.keepalive for device in spec.devices))


# ---------------------------------------------------------------------------------------------- mosquitto.conf


def render_mosquitto_conf(spec: Spec) -> bytes:
    """mosquitto.conf naming every file by its absolute path under INSTALL_DIR."""
    if spec.broker.external:
        raise UserError(f"{spec.path} targets a broker gen does not run (broker.external): there is no broker config",
                        hint="give its operator OUT/broker/ (our CA and CRL, README.md); run `gen generate SPEC`")

    def path(name: str) -> str:
        return str(INSTALL_DIR / name)

    text = render_template(
        "broker/mosquitto.conf.j2",
        project=spec.project,
        auth=auth_mode(spec),
        tls_port=spec.broker.port,
        plaintext_port=spec.broker.plaintext_port,
        tls_version=TLS_MIN_VERSION,
        ciphers=":".join(TLS12_CIPHERS),
        max_packet_size=max_packet_size(spec),
        max_connections=max_connections(spec),
        max_keepalive=max_keepalive(spec),
        acl_file=path(ACL_FILE),
        dynsec_plugin=path(DYNSEC_PLUGIN_FILE),
        dynsec_state=str(dynsec_state_path(spec)),
        password_file=path(PASSWORD_FILE) if uses_password_file(spec) else None,
        certfile=path(CERT_FILE),
        keyfile=path(KEY_FILE),
        cafile=path(CA_FILE) if verifies_client_certs(spec) else None,
        crlfile=path(CRL_FILE) if verifies_client_certs(spec) else None,
        bootstrap={"port": spec.broker.provision_port, "password_file": path(BOOTSTRAP_PASSWORD_FILE),
                   "acl_file": path(BOOTSTRAP_ACL_FILE), "max_connections": bootstrap_max_connections(spec)}
        if spec.provisions_devices else None,
    )
    return text.encode()


def bootstrap_max_connections(spec: Spec) -> int:
    """The bootstrap listener's cap: one connection per device that makes its own key, and a few spares."""
    return sum(1 for device in spec.devices if device.makes_own_key) + BOOTSTRAP_SPARE_CONNECTIONS


# ---------------------------------------------------------------------------------------------- password file


def hash_password_pbkdf2_sha512(password: str, *, salt: bytes, iterations: int = PASSWORD_ITERATIONS) -> str:
    """Mosquitto's `$7$` hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>`."""
    if len(salt) != PASSWORD_SALT_BYTES:
        raise ValueError(f"Mosquitto accepts only {PASSWORD_SALT_BYTES}-byte salts, got {len(salt)}")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, PASSWORD_HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_matches(password: str, encoded: str) -> bool:
    """Whether a `$7$` hash (as written by us or `mosquitto_passwd`) is the hash of `password`."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"]:
        return False
    iterations, salt, expected = int(parts[2]), base64.b64decode(parts[3]), parts[4]
    ours = hash_password_pbkdf2_sha512(password, salt=salt, iterations=iterations).split("$")[4]
    return hmac.compare_digest(ours, expected)


def password_salt(username: str, *, salt_key: bytes) -> bytes:
    """A salt unique per user and per installation, stable across runs (so a rerun writes the same file and the
    broker is not reloaded for nothing). Derived from a secret of the installation (the broker key) and the
    username only: never from the password, so the salt reveals nothing about it."""
    return hmac.new(salt_key, b"mosquitto-passwd-salt\0" + username.encode("utf-8"),
                    hashlib.sha256).digest()[:PASSWORD_SALT_BYTES]


def render_password_file(passwords: Iterable[tuple[str, str]], *, salt_key: bytes,
                         iterations: int = PASSWORD_ITERATIONS) -> bytes:
    """Mosquitto password_file: one `username:$7$...` line per user, sorted by username."""
    lines = []
    for username, password in sorted(passwords):
        check_safe_username(username)
        salt = password_salt(username, salt_key=salt_key)
        lines.append(f"{username}:{hash_password_pbkdf2_sha512(password, salt=salt, iterations=iterations)}\n")
    return "".join(lines).encode()


# ---------------------------------------------------------------------------------------------- ACL


def check_safe_username(username: str) -> str:
    """A username that can stand in an acl_file `user` line and a password_file line, and never acts as a
    wildcard. The spec rejects such ids first (gen check); this is the last guard before a file is written."""
    if not username or _UNSAFE_USERNAME.search(username):
        raise ValueError(f"username {username!r} must not reach Mosquitto's ACL or password file "
                         "(white space, control characters, '+', '#', ':' or '/')")
    return username


def _check_safe_topic(topic: str) -> str:
    if not topic or _UNSAFE_TOPIC.search(topic):
        raise ValueError(f"topic {topic!r} cannot stand in an acl_file line (empty, white space or control character)")
    return topic


def device_acl_section(device: Device) -> AclSection:
    """A device publishes only to its own publish topics and status topic, and reads only its own subscribe
    filters and its status topic. With `ota:` it reads its OTA topic (never writes it: it cannot announce an image
    to itself) and writes its firmware report."""
    rules = [AclRule("write", publish.topic) for publish in device.publish]
    rules.append(AclRule("readwrite", device.status.topic))
    rules += [AclRule("read", subscribe.filter) for subscribe in device.subscribe]
    if device.makes_own_key:   # its rotations: requests out, answers (and rotate commands) in
        rules += [AclRule("write", request_topic(device.id, "operational")),
                  AclRule("read", response_topic(device.id, "operational"))]
    if device.ota is not None:
        rules += [AclRule("read", device.ota.topic), AclRule("write", device.ota.firmware_topic)]
    if device.log is not None:   # its log lines out; it has no reason to read them back
        rules.append(AclRule("write", device.log.topic))
    return AclSection(check_safe_username(device.username), tuple(_unique(rules)))


def provisioner_acl_section() -> AclSection:
    """`gen provision serve` reads every certificate request and answers it; it sees no device topic."""
    rules = [AclRule("read", topic_filter) for topic_filter in REQUEST_FILTERS]
    rules += [AclRule("write", response_topic("+", channel)) for channel in CHANNELS]
    return AclSection(PROVISIONER_IDENTITY, tuple(rules))


def bootstrap_acl_sections(spec: Spec) -> tuple[AclSection, ...]:
    """On the bootstrap listener a device may send its first certificate request and read the answer: nothing else."""
    return tuple(AclSection(check_safe_username(bootstrap_username(device.id)),
                            (AclRule("write", request_topic(device.id, "bootstrap")),
                             AclRule("read", response_topic(device.id, "bootstrap"))))
                 for device in spec.devices if device.makes_own_key)


def device_topics(device: Device) -> tuple[str, ...]:
    """Every topic name and filter a device uses."""
    ota = (device.ota.topic, device.ota.firmware_topic) if device.ota is not None else ()
    log = (device.log.topic,) if device.log is not None else ()
    return (device.status.topic, *(p.topic for p in device.publish), *(s.filter for s in device.subscribe), *ota,
            *log)


def server_acl_sections(spec: Spec) -> tuple[AclSection, ...]:
    """The backend (and gen doctor, which proves round trips like a backend) read and write every device topic:
    `<prefix>/#` for each group of device topics sharing their first level (the spec's topics and gen's OTA topics
    may lie under different ones), else each topic and filter explicitly, so a backend's `<prefix>/#` subscription
    is one the ACL grants (RabbitMQ checks the filter itself against the rules). With `ota:`, only
    gen's OTA publisher may write the OTA topics: the backend and the doctor are denied them (Mosquitto checks a
    user's `deny` patterns before its grants, and has no read-only deny), and the publisher may do nothing else but
    read what the devices report."""
    topics = [topic for device in spec.devices for topic in device_topics(device)]
    rules = []
    for group in by_first_level(topics):
        prefix = common_topic_prefix(group)
        if prefix is not None:
            rules.append(AclRule("readwrite", f"{prefix}/#" if len(group) > 1 else group[0]))
        else:
            rules += [AclRule("readwrite", topic) for topic in group]
    updated = [device for device in spec.devices if device.ota is not None]
    closed = [AclRule("deny", device.ota.topic) for device in updated if device.ota is not None] + rules
    sections = [AclSection(BACKEND_IDENTITY, tuple(_unique(closed))),
                AclSection(DOCTOR_IDENTITY, tuple(_unique(closed)))]
    if updated:
        publisher = []
        for device in updated:
            assert device.ota is not None
            publisher += [AclRule("write", device.ota.topic), AclRule("read", device.ota.firmware_topic),
                          AclRule("read", device.status.topic)]
        sections.append(AclSection(OTA_IDENTITY, tuple(_unique(publisher))))
    if ADMIN_IDENTITY in spec.server_identities:
        sections.append(admin_acl_section())
    if LOGS_IDENTITY in spec.server_identities:
        sections.append(logs_acl_section(spec))
    sections += [client_acl_section(client) for client in spec.clients]
    return tuple(sections)


def client_acl_section(client: Client) -> AclSection:
    """A `clients:` identity reads what it subscribes to and writes what it publishes to (both: readwrite)."""
    rules = [AclRule("readwrite" if topic in client.publish else "read", topic) for topic in client.subscribe]
    rules += [AclRule("write", topic) for topic in client.publish if topic not in client.subscribe]
    return AclSection(client.name, tuple(_unique(rules)))


def logs_acl_section(spec: Spec) -> AclSection:
    """`gen logs` reads the devices' log topics, nothing else (no status, no data, no writes)."""
    return AclSection(LOGS_IDENTITY, tuple(_unique(AclRule("read", device.log.topic)
                                                   for device in spec.devices if device.log is not None)))


def admin_acl_section() -> AclSection:
    """`gen broker apply` sends the dynamic-security plugin's commands and reads their answers; nothing else."""
    return AclSection(ADMIN_IDENTITY, (AclRule("write", CONTROL_TOPIC), AclRule("read", CONTROL_RESPONSE_TOPIC)))


def dynsec_state_path(spec: Spec) -> PurePosixPath:
    return DYNSEC_STATE_DIR / f"gen-{spec.project}-dynsec.json"


def acl_sections(spec: Spec) -> tuple[AclSection, ...]:
    provisioner = (provisioner_acl_section(),) if spec.provisions_devices else ()
    return (*(device_acl_section(device) for device in spec.devices), *server_acl_sections(spec), *provisioner)


def render_acl(spec: Spec) -> bytes:
    return _render_acl_file(spec, acl_sections(spec), "the device listener")


def render_bootstrap_acl(spec: Spec) -> bytes:
    return _render_acl_file(spec, bootstrap_acl_sections(spec), "the bootstrap listener")


def _render_acl_file(spec: Spec, sections: tuple[AclSection, ...], listener: str) -> bytes:
    usernames = [section.username for section in sections]
    assert len(set(usernames)) == len(usernames), f"duplicate ACL user in {usernames}"
    for section in sections:
        for rule in section.rules:
            _check_safe_topic(rule.topic)
    return render_template("broker/acl.j2", project=spec.project, sections=sections, listener=listener).encode()


def _unique(rules: Iterable[AclRule]) -> list[AclRule]:
    return list(dict.fromkeys(rules))


# ---------------------------------------------------------------------------------------------- README


def render_operator_readme(spec: Spec) -> bytes:
    return render_template(
        "broker/README.md.j2",
        project=spec.project,
        auth=auth_mode(spec),
        install_dir=str(INSTALL_DIR),
        tls_port=spec.broker.port,
        plaintext_port=spec.broker.plaintext_port,
        broker_names=spec.broker.names,
        verifies_client_certs=verifies_client_certs(spec),
        uses_password_file=uses_password_file(spec),
        crl_validity_days=CRL_VALIDITY_DAYS,
        crl_refresh_days=int(CRL_VALIDITY_DAYS * CRL_RESIGN_FRACTION),
        backend=BACKEND_IDENTITY,
        servers=[name for name in spec.server_identities if name not in (ADMIN_IDENTITY, LOGS_IDENTITY)],
        logs_reader=LOGS_IDENTITY if LOGS_IDENTITY in spec.server_identities else None,
        admin=ADMIN_IDENTITY,
        dynsec_plugin_file=DYNSEC_PLUGIN_FILE,
        dynsec_state=str(dynsec_state_path(spec)) if not spec.broker.external else "",
        external=spec.broker.external,
        cert_from_elsewhere=spec.broker.ca_file is not None,
        own_cert_file=spec.broker.cert_file is not None,
        device_ca_file=spec.broker.ca_file.name if spec.broker.ca_file else None,
        max_connections=max_connections(spec),
        open_files=open_files_limit(spec),
        max_packet_size=max_packet_size(spec),
        conf_file=CONF_FILE, ca_file=CA_FILE, cert_file=CERT_FILE, key_file=KEY_FILE, crl_file=CRL_FILE,
        password_file=PASSWORD_FILE, acl_file=ACL_FILE,
        client_lines=_client_lines(spec),
    ).encode()


def _client_lines(spec: Spec) -> dict[str, list[str]]:
    """Each `clients:` identity's (and the backend's) mosquitto_sub/mosquitto_pub lines, for the README."""
    return {name: identity_command_lines(spec, name) for name in (BACKEND_IDENTITY, *(c.name for c in spec.clients))}


def identity_command_lines(spec: Spec, name: str) -> list[str]:
    """mosquitto_sub/mosquitto_pub lines for `name` from its ACL section (none when the ACL has no such user)."""
    section = next((s for s in acl_sections(spec) if s.username == name), None)
    if section is None:
        return []
    return client_command_lines(spec, name, [(rule.access, rule.topic) for rule in section.rules], auth_mode(spec))
