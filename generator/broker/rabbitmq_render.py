"""The broker side for `broker.engine: rabbitmq`: a RabbitMQ 3.10 cluster with rabbitmq_mqtt, rendered from the Spec.

Pure functions, no I/O: `render_rabbitmq(spec, credentials)` returns every file of OUT/broker/ with its mode.
`generator.broker.rabbitmq_runner` runs a real local cluster from these files.

Decisions (observed with RabbitMQ 3.10.8 / Erlang 25, see ../shared/reference/rabbitmq-cluster.md):
- Certificate login only: `mqtt.ssl_cert_login` with the CN as username. A username/password sent in CONNECT would
  replace the certificate's name, so no MQTT user has a password (`password_hash: ""` refuses every password):
  the certificate is the only way in. gen's session administrator has a password, but for the management API
  only: it has no vhost permission, so it cannot log in over MQTT.
- The complete `ssl_options` live in advanced.config: a key there replaces the whole list rabbitmq.conf makes
  (a partial list leaves the listener without a certificate). The CRL is read from a hashed directory
  (`crl/<issuer hash>.r0`): replacing that file applies to the next handshake, without a restart.
- Topic rules: per user topic permissions on amq.topic, regular expressions over the AMQP routing key (MQTT `/` is
  `.`, `.` is `/`, `+` is `*`), anchored, derived from the same ACL sections as Mosquitto's acl file. A user
  without a topic permission could publish anywhere, so every MQTT user gets one (`^$`: nothing).
- `mqtt.durable_queue_type = quorum`: a persistent session survives the loss of the node its queue lived on.
- Nothing listens for AMQP; management listens on loopback only (gen broker apply runs on a node or through a tunnel).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from generator.broker.render import (
    CA_FILE, CERT_FILE, CRL_FILE, KEY_FILE, README_FILE, TLS12_CIPHERS, AclSection, BrokerFiles,
    acl_sections,
)
from generator.core.rendering import render_template
from generator.pki.credentials import BrokerCredentials
from generator.pki.crl_hash import crl_hash_file_name
from generator.spec.model import ADMIN_IDENTITY, Spec

RABBITMQ_VERSION = "3.10.8"
INSTALL_DIR = PurePosixPath("/etc/rabbitmq/gen")   # certificates, key, CRL directory, definitions
CONFIG_DIR = PurePosixPath("/etc/rabbitmq")         # each node's rabbitmq.conf, advanced.config, enabled_plugins
NODE_NAME_PREFIX = "rabbit"                         # rabbit@<node host>
DIST_PORT = 25672                                   # Erlang distribution (inter-node): firewall it
EPMD_PORT = 4369
MANAGEMENT_PORT = 15672                             # loopback only
PLUGINS = ("rabbitmq_management", "rabbitmq_mqtt")

# Files of OUT/broker/ for this engine.
DEFINITIONS_FILE = "definitions.json"
COOKIE_FILE = "erlang.cookie"
ADMIN_PASSWORD_FILE = "admin.password"     # the management API password of ADMIN_IDENTITY (gen broker apply)
CRL_DIR = "crl"
NODES_DIR = "nodes"
CONF_FILE = "rabbitmq.conf"
ADVANCED_FILE = "advanced.config"
PLUGINS_FILE = "enabled_plugins"
ENV_FILE = "rabbitmq-env.conf"
SECRET_FILES = (KEY_FILE, COOKIE_FILE, ADMIN_PASSWORD_FILE)

# Capacity (observed on 3.10.8): ~0.3 MB of broker memory per mTLS connection, sockets capped at 0.9 x the fd limit.
MEMORY_PER_CONNECTION_MB = 0.35
BASE_MEMORY_MB = 512
MIN_WATERMARK_MB = 1024
SOCKETS_PER_FD = 0.9
OPEN_FILES_SPARE = 1024
SPARE_CONNECTIONS = 64

# rabbit_mqtt names the queue of a client's subscriptions at each QoS "mqtt-subscription-<client id>qos<0|1>"
# (a persistent session's outlives its connection).
SESSION_QUEUE_PREFIX = "mqtt-subscription-"
SESSION_QUEUE_QOS = (0, 1)
# What every MQTT user may do with queues: its own subscription queues (client id = its name) for a device,
# any subscription queue for a server identity (its client id is its own business).
_SUBSCRIPTION_QUEUES = f"{SESSION_QUEUE_PREFIX}.*"
_NOTHING = "^$"
# gen doctor probes with the device's identity under the client id <id>-doctor (generator.doctor's
# PROBE_CLIENT_SUFFIX): its subscription queue is named after that client id.
DOCTOR_PROBE_SUFFIX = "-doctor"
_MQTT_TO_AMQP = str.maketrans("/.+", "./*")

_SECRET_MODE = 0o600
_PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class ClusterNode:
    host: str               # the host name devices dial and the node name's host part
    index: int              # 1-based

    @property
    def node_name(self) -> str:
        return f"{NODE_NAME_PREFIX}@{self.host}"


def cluster_nodes(spec: Spec) -> tuple[ClusterNode, ...]:
    return tuple(ClusterNode(host, index) for index, host in enumerate(spec.broker.nodes, start=1))


# ---------------------------------------------------------------------------------------------- sizing


def connections_per_node(spec: Spec) -> int:
    """Connections one node must hold with one node down (N+1): the fleet over the survivors, and spares."""
    nodes = len(spec.broker.nodes)
    survivors = max(1, nodes - 1)
    return -(-len(spec.devices) // survivors) + SPARE_CONNECTIONS


def memory_watermark_mb(spec: Spec) -> int:
    return max(MIN_WATERMARK_MB, int(BASE_MEMORY_MB + MEMORY_PER_CONNECTION_MB * connections_per_node(spec)))


def open_files_limit(spec: Spec) -> int:
    """LimitNOFILE per node: RabbitMQ accepts sockets up to 0.9 x this."""
    return int(connections_per_node(spec) / SOCKETS_PER_FD) + OPEN_FILES_SPARE


# ---------------------------------------------------------------------------------------------- secrets


def erlang_cookie(salt_key: bytes) -> str:
    """The cluster's shared Erlang cookie: derived from a secret of the installation (stable across runs)."""
    digest = hmac.new(salt_key, b"rabbitmq-erlang-cookie\0", hashlib.sha256).digest()
    return base64.b32encode(digest).decode().rstrip("=")


def admin_password(salt_key: bytes) -> str:
    digest = hmac.new(salt_key, b"rabbitmq-management-admin\0", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def rabbit_password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4) + SHA-256(salt + password))."""
    assert len(salt) == 4
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


# ---------------------------------------------------------------------------------------------- topic rules


def amqp_topic(mqtt_topic: str) -> str:
    """rabbit_mqtt_util:mqtt_to_amqp: `/` and `.` swap; `+` is `*` (and `#` stays)."""
    return mqtt_topic.translate(_MQTT_TO_AMQP)


def filter_regex(acl_topic: str) -> str:
    """A regex fragment matching every routing key (a topic a client publishes) and binding key (a filter it
    subscribes) that Mosquitto's ACL entry `acl_topic` allows: `+` is one level (also `*` in a filter), a final
    `#` is the level before it and anything under it."""
    levels = acl_topic.split("/")
    parts: list[str] = []
    tail = ""
    if levels[-1] == "#":
        levels = levels[:-1]
        tail = r"(\..*)?"
    for level in levels:
        parts.append("[^.]+" if level == "+" else re.escape(amqp_topic(level)))
    return r"\.".join(parts) + tail


def _alternation(topics: list[str]) -> str:
    if not topics:
        return _NOTHING
    return "^(" + "|".join(filter_regex(topic) for topic in dict.fromkeys(topics)) + ")$"


def topic_permission(section: AclSection) -> dict[str, str]:
    """{"write": regex, "read": regex} for one user, from its ACL section (deny rules become a look-ahead)."""
    denied = [rule.topic for rule in section.rules if rule.access == "deny"]
    allowed: dict[str, list[str]] = {"write": [], "read": []}
    for rule in section.rules:
        if rule.access in ("write", "readwrite"):
            allowed["write"].append(rule.topic)
        if rule.access in ("read", "readwrite"):
            allowed["read"].append(rule.topic)
    result = {}
    for access, topics in allowed.items():
        regex = _alternation(topics)
        if denied and regex != _NOTHING:
            regex = "^(?!(" + "|".join(filter_regex(topic) for topic in denied) + ")$)" + regex[1:]
        result[access] = regex
    return result


# ---------------------------------------------------------------------------------------------- definitions


def session_queues(client_id: str) -> tuple[str, ...]:
    """The names of `client_id`'s session queues, one per QoS."""
    return tuple(f"{SESSION_QUEUE_PREFIX}{client_id}qos{qos}" for qos in SESSION_QUEUE_QOS)


def render_definitions(spec: Spec, salt_key: bytes) -> bytes:
    """definitions.json for `rabbitmqctl import_definitions`: every device and server identity as a certificate
    user (no password), its queue permissions and topic rules; gen's session administrator for the management API."""
    users = []
    permissions = []
    topic_permissions = []
    device_ids = {device.id for device in spec.devices}
    for section in acl_sections(spec):
        if section.username == ADMIN_IDENTITY:     # Mosquitto's dynsec kick; here: the management API user below
            continue
        users.append({"name": section.username, "password_hash": "",
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
        queues = (f"^{SESSION_QUEUE_PREFIX}{re.escape(section.username)}({DOCTOR_PROBE_SUFFIX})?qos[01]$"
                  if section.username in device_ids
                  else f"^{_SUBSCRIPTION_QUEUES}$")
        permissions.append({"user": section.username, "vhost": "/", "configure": queues,
                            "write": f"^amq\\.topic$|{queues}", "read": f"^amq\\.topic$|{queues}"})
        topic_permissions.append({"user": section.username, "vhost": "/", "exchange": "amq.topic",
                                  **topic_permission(section)})
    salt = hmac.new(salt_key, b"rabbitmq-admin-salt\0", hashlib.sha256).digest()[:4]
    users.append({"name": ADMIN_IDENTITY, "password_hash": rabbit_password_hash(admin_password(salt_key), salt),
                  "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]})
    # gen broker apply deletes the session queues of identities that left (configure); it reads and writes nothing.
    permissions.append({"user": ADMIN_IDENTITY, "vhost": "/", "configure": f"^{_SUBSCRIPTION_QUEUES}$",
                        "write": "^$", "read": "^$"})
    definitions = {"rabbit_version": RABBITMQ_VERSION, "rabbitmq_version": RABBITMQ_VERSION,
                   "users": users, "vhosts": [{"name": "/"}], "permissions": permissions,
                   "topic_permissions": topic_permissions, "parameters": [], "global_parameters": [],
                   "policies": [], "queues": [], "exchanges": [], "bindings": []}
    return (json.dumps(definitions, indent=1) + "\n").encode()


def definitions_of(definitions: dict, user: str) -> dict:
    """The part of a definitions document that makes one user again: the user, its permissions, its topic rules."""
    return {key: [entry for entry in definitions.get(key, []) if entry.get("name", entry.get("user")) == user]
            for key in ("users", "permissions", "topic_permissions")}


# ---------------------------------------------------------------------------------------------- node files


def render_node_conf(spec: Spec, node: ClusterNode) -> bytes:
    return render_template(
        "broker/rabbitmq.conf.j2", project=spec.project, node=node, nodes=cluster_nodes(spec),
        tls_port=spec.broker.port, management_port=MANAGEMENT_PORT, watermark_mb=memory_watermark_mb(spec),
    ).encode()


def render_advanced_config(spec: Spec, crl_dir: str = str(INSTALL_DIR / CRL_DIR),
                           files_dir: str = str(INSTALL_DIR)) -> bytes:
    """advanced.config: the complete ssl_options (a partial list here would replace rabbitmq.conf's whole list)."""
    return render_template(
        "broker/advanced.config.j2", project=spec.project, cacertfile=f"{files_dir}/{CA_FILE}",
        certfile=f"{files_dir}/{CERT_FILE}", keyfile=f"{files_dir}/{KEY_FILE}", crl_dir=crl_dir,
        ciphers=TLS12_CIPHERS,
    ).encode()


def render_enabled_plugins() -> bytes:
    return f"[{','.join(PLUGINS)}].\n".encode()


def render_node_env(node: ClusterNode) -> bytes:
    return (f"# rabbitmq-env.conf of {node.node_name} (install as {CONFIG_DIR}/{ENV_FILE})\n"
            f"NODENAME={node.node_name}\nUSE_LONGNAME={'true' if '.' in node.host else 'false'}\n"
            f"DIST_PORT={DIST_PORT}\n").encode()


def render_rabbitmq(spec: Spec, credentials: BrokerCredentials) -> BrokerFiles:
    """Every file of OUT/broker/ for a RabbitMQ cluster, with modes (key, cookie, admin password 0600)."""
    crl_name = crl_hash_file_name(credentials.crl_pem)
    files: dict[str, bytes] = {
        README_FILE: render_cluster_readme(spec, crl_name),
        DEFINITIONS_FILE: render_definitions(spec, credentials.salt_key),
        COOKIE_FILE: erlang_cookie(credentials.salt_key).encode(),
        ADMIN_PASSWORD_FILE: (admin_password(credentials.salt_key) + "\n").encode(),
        CA_FILE: credentials.cafile_pem,
        CRL_FILE: credentials.crl_pem,
        f"{CRL_DIR}/{crl_name}": credentials.crl_pem,
    }
    if credentials.cert_pem is not None and credentials.key_pem is not None:
        files[CERT_FILE] = credentials.cert_pem
        files[KEY_FILE] = credentials.key_pem
    for node in cluster_nodes(spec):
        base = f"{NODES_DIR}/{node.host}"
        files[f"{base}/{CONF_FILE}"] = render_node_conf(spec, node)
        files[f"{base}/{ADVANCED_FILE}"] = render_advanced_config(spec)
        files[f"{base}/{PLUGINS_FILE}"] = render_enabled_plugins()
        files[f"{base}/{ENV_FILE}"] = render_node_env(node)
    modes = {name: (_SECRET_MODE if name in SECRET_FILES else _PUBLIC_MODE) for name in files}
    return BrokerFiles(files=files, modes=modes)


def render_cluster_readme(spec: Spec, crl_name: str) -> bytes:
    return render_template(
        "broker/rabbitmq-README.md.j2", project=spec.project, nodes=cluster_nodes(spec), tls_port=spec.broker.port,
        install_dir=str(INSTALL_DIR), config_dir=str(CONFIG_DIR), dist_port=DIST_PORT, epmd_port=EPMD_PORT,
        management_port=MANAGEMENT_PORT, devices=len(spec.devices), per_node=connections_per_node(spec),
        watermark_mb=memory_watermark_mb(spec), open_files=open_files_limit(spec), crl_name=crl_name,
        admin=ADMIN_IDENTITY, status_topics=[device.status.topic for device in spec.devices[:1]],
        keepalive=max(device.keepalive for device in spec.devices),
    ).encode()
