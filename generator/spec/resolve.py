"""From validated spec data to the Spec model: per-device overrides merged, defaults filled, `{id}` expanded, and
the rules JSON Schema cannot say (ids, topics, QoS per framework, fleet isolation, names for C and configs)."""

from __future__ import annotations

import ipaddress
import keyword
import re
from pathlib import Path
from typing import Any

from generator.core.hostnames import is_ip_address
from generator.core.topics import (
    TopicIndex,
    expand_topic,
    filter_matches,
    topic_filter_problem,
    topic_name_problem,
    unknown_placeholders,
)
from generator.firmware.limits import device_problems
from generator.ota.version import UNKNOWN_VERSION, project_version, version_problem
from generator.provision.protocol import reserved_topic_problem
from generator.spec.catalogue import Target, load_catalogue
from generator.spec.model import (
    BACKEND_IDENTITY,
    SERVER_IDENTITIES,
    Broker,
    Client,
    Device,
    DevicePki,
    LogSettings,
    Library,
    Ota,
    PkiOptions,
    Publish,
    Spec,
    Status,
    Subscribe,
    VAR_INT_RANGE,
    VAR_STRING_MAX,
    Var,
    Wifi,
)
from generator.spec.schema_check import schema_default
from generator.spec.security import resolve_security
from generator.spec.source import SpecProblem, SpecSource

DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,22}$")
C_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")  # an Erlang node name's host part, unquoted
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
    "class", "delete", "new", "namespace", "template", "this", "throw", "try", "catch", "private", "public",
    "protected", "virtual", "operator", "friend", "true", "false", "nullptr", "setup", "loop", "main", "app_main",
}
# Device settings a fleet entry may override; the rest (project, broker, pki.dir...) belong to the whole spec.
OVERRIDABLE = ("target", "wifi", "auth", "secrets", "keepalive", "ntp", "status", "publish", "subscribe", "pki", "log")
_MERGED_MAPPINGS = ("wifi", "status", "pki", "log")
DEVICE_PKI_KEYS = ("key_type", "validity_days", "key_origin", "renew_before_days")
# libraries: a registry entry (owner/name, an optional @version) or a folder of the user's (./ or ../). What reaches
# platformio.ini, idf_component.yml and CMake: no ';' or '#' (INI comments), quotes, backslashes or newlines.
_REGISTRY_LIBRARY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9 _.+-]*(@[A-Za-z0-9 ^~<>=!*.,_+-]+)?$")
_LOCAL_LIBRARY = re.compile(r"^\.\.?/[A-Za-z0-9._/+@-]+$")
# build_flags: one flag each, starting with '-', nothing a build file would read as a separator, quote or comment.
_BUILD_FLAG = re.compile(r"^-[A-Za-z0-9_=.,:/+@%-]+$")


def host_problem(name: str) -> str | None:
    """Why `name` cannot be a broker or NTP host name (a DNS name or an IP address), or None."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if len(name) > 253:
        return "is longer than 253 characters"
    labels = name.rstrip(".").split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return "is neither an IP address nor a DNS name (letters, digits, '-' and '.' only)"
    if labels[-1].isdigit():
        return "looks like an IP address but is not a valid one"
    return None


def _trailing_dot_problem(name: str) -> tuple[str, str] | None:
    if name.endswith("."):
        return ("ends in a dot: the device verifies the name exactly as written, and certificates never carry "
                "the dot, so the TLS name check would fail", f"write {name.rstrip('.')!r}")
    return None


def dialled_host_problem(host: str) -> tuple[str, str] | None:
    """Why the devices cannot dial `host`, though it is a valid name, and what to do; or None."""
    if is_ip_address(host) and ipaddress.ip_address(host).version == 6:
        return ("is an IPv6 address; the devices dial the broker over IPv4 (Arduino-ESP32 2.0.17's WiFiClient "
                "resolves and connects IPv4 only, and gen simulate routes IPv4)",
                "use the broker's IPv4 address or a DNS name; IPv6 addresses can go in broker.names")
    return _trailing_dot_problem(host)


def _device_id_problem(device_id: str) -> str | None:
    if not isinstance(device_id, str):
        return "must be a string"
    if DEVICE_ID_PATTERN.match(device_id):
        if device_id.lower() == BACKEND_IDENTITY:
            return f"{device_id!r} is reserved for the server-side identity that reads every device topic"
        return None
    if not device_id:
        return "is empty"
    if len(device_id) > 23:
        return (f"{device_id!r} is {len(device_id)} characters; MQTT 3.1.1 brokers must accept client ids of "
                "only up to 23 characters")
    bad = sorted({ch for ch in device_id if not (ch.isascii() and (ch.isalnum() or ch in "-_"))})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        return (f"{device_id!r} contains {shown}; the id is the MQTT client id, the certificate CN, the broker "
                "username, a file name and a C identifier suffix, so only letters, digits, '-' and '_' are safe"
                + (" ('+' and '#' are MQTT wildcards that Mosquitto's ACL refuses)" if set(bad) & {"+", "#"} else ""))
    return f"{device_id!r} must start with a letter or digit"


def _c_name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not C_NAME_PATTERN.match(name):
        return "must be a C identifier (letters, digits and '_', not starting with a digit, at most 32 characters)"
    if name in _C_KEYWORDS or keyword.iskeyword(name):
        return f"{name!r} is a reserved word in C/C++ or the firmware; choose another name"
    return None


class _Resolver:
    def __init__(self, source: SpecSource, catalogue: dict[str, Target]):
        self.source = source
        self.data: dict[str, Any] = source.data
        self.catalogue = catalogue
        self.problems: list[SpecProblem] = []
        self.ota_auth_reported = False
        self.security_reported: set[str] = set()

    def problem(self, path: tuple, message: str, hint: str | None = None) -> None:
        self.problems.append(SpecProblem(path, message, hint))

    def _no_nul(self, path: tuple, value: Any) -> None:
        if isinstance(value, str) and "\0" in value:
            self.problem(path, "contains a NUL character, which cannot pass through C strings", "remove it")

    # --- whole-spec parts -----------------------------------------------------------------------------------
    def broker(self) -> Broker:
        raw = self.data["broker"]
        host = raw["host"]
        problem = host_problem(host)
        if problem:
            self.problem(("broker", "host"), f"{host!r} {problem}")
        elif (unusable := dialled_host_problem(host)) is not None:
            self.problem(("broker", "host"), f"{host!r} {unusable[0]}", unusable[1])
        names = [host]
        for index, name in enumerate(raw.get("names", [])):
            problem = host_problem(name)
            if problem:
                self.problem(("broker", "names", index), f"{name!r} {problem}")
            elif (dotted := _trailing_dot_problem(name)) is not None:
                self.problem(("broker", "names", index), f"{name!r} {dotted[0]}", dotted[1])
            elif _normal_host(name) not in {_normal_host(n) for n in names}:
                names.append(name)
        port = raw.get("port", schema_default("broker", "port"))
        plaintext_port = raw.get("plaintext_port")
        if plaintext_port is not None and plaintext_port == port:
            self.problem(("broker", "plaintext_port"), f"is the same as the TLS port {port}",
                         "choose another port, or remove plaintext_port")
        files = {key: self._spec_file(("broker", key), raw[key]) for key in ("ca_file", "cert_file", "key_file")
                 if key in raw}
        external = raw.get("external", schema_default("broker", "external"))
        if external:
            if "ca_file" not in raw:
                self.problem(("broker", "external"), "a broker you do not run needs `ca_file`: the CA its "
                             "certificate chains to, which the devices trust", "add `ca_file: <its CA, PEM>`")
            for key in ("cert_file", "key_file", "plaintext_port", "max_connections"):
                if key in raw:
                    self.problem(("broker", key), "configures a broker gen runs, but `external: true` says "
                                 "this one is run by someone else", f"remove `{key}`, or `external: true`")
        provision_port = raw.get("provision_port", schema_default("broker", "provision_port"))
        if provision_port in (port, plaintext_port):
            self.problem(("broker", "provision_port"), f"is the same as the {'TLS' if provision_port == port else 'plaintext'} "
                         f"port {provision_port}", "choose another port for the bootstrap listener")
        engine = raw.get("engine", schema_default("broker", "engine"))
        nodes: list[str] = []
        if engine == "rabbitmq":
            nodes = self._cluster_nodes(raw, names, external=bool(external))
        elif "nodes" in raw:
            self.problem(("broker", "nodes"), "names cluster nodes, but the broker is one Mosquitto process",
                         "add `engine: rabbitmq`, or remove `nodes`")
        return Broker(host=host, names=tuple(names), port=port, plaintext_port=plaintext_port,
                      max_connections=raw.get("max_connections"), external=bool(external),
                      provision_port=provision_port, engine=engine, nodes=tuple(nodes), **files)

    def _cluster_nodes(self, raw: dict, names: list[str], *, external: bool) -> list[str]:
        """broker.nodes of a RabbitMQ cluster: host names the devices dial in turn; each joins the certificate's
        names (appended to `names`)."""
        if "nodes" not in raw:
            self.problem(("broker", "engine"), "a RabbitMQ cluster needs the host names of its nodes",
                         "add `nodes: [mq1.example.com, mq2.example.com, mq3.example.com]` under broker")
            return []
        if external:
            self.problem(("broker", "engine"), "configures a cluster gen renders, but `external: true` says this "
                         "broker is run by someone else", "remove `engine: rabbitmq`, or `external: true`")
        for key in ("plaintext_port", "cert_file", "key_file", "ca_file", "max_connections"):
            if key in raw:
                self.problem(("broker", key), "is a Mosquitto setting; gen's RabbitMQ cluster serves TLS only, "
                             "with a certificate from the project's PKI", f"remove `{key}`")
        nodes: list[str] = []
        for index, node in enumerate(raw["nodes"]):
            problem = host_problem(node)
            if problem is None and (unusable := dialled_host_problem(node)) is not None:
                problem = unusable[0]
            if problem is None and not _NODE_NAME.fullmatch(node):
                problem = "cannot be an Erlang node's host name (letters, digits, '-' and '.' only)"
            if problem:
                self.problem(("broker", "nodes", index), f"{node!r} {problem}")
            elif _normal_host(node) in {_normal_host(n) for n in nodes}:
                self.problem(("broker", "nodes", index), f"{node!r} is listed twice", "list each node once")
            else:
                nodes.append(node)
                if _normal_host(node) not in {_normal_host(n) for n in names}:
                    names.append(node)
        return nodes

    def _spec_file(self, path: tuple, name: str) -> Path:
        """A file the spec names, relative to the spec's directory; it must exist."""
        file = Path(name) if Path(name).is_absolute() else self.source.path.parent / name
        if not file.is_file():
            self.problem(path, f"{name!r}: there is no such file ({file})", "give the path relative to the spec")
        return file.resolve()

    def pki(self) -> PkiOptions:
        raw = self.data.get("pki", {})
        written = raw.get("dir", schema_default("pki", "dir"))
        directory = Path(written)
        project_dir = self.source.path.parent.resolve()
        if directory.is_absolute() or not (project_dir / directory).resolve().is_relative_to(project_dir):
            self.problem(("pki", "dir"), f"{written!r} is outside the project folder {project_dir}; the PKI (the CA "
                         "key among it) is kept next to the spec, and gen sets the modes of every folder it uses",
                         "use a folder inside the project, e.g. pki (the default)")
        directory = project_dir / directory
        env = raw.get("ca_passphrase_env")
        if env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env):
            self.problem(("pki", "ca_passphrase_env"), f"{env!r} is not an environment variable name")
        return PkiOptions(
            dir=directory.resolve(),
            key_type=raw.get("key_type", schema_default("pki", "key_type")),
            validity_days=raw.get("validity_days", schema_default("pki", "validity_days")),
            ca_validity_days=raw.get("ca_validity_days", schema_default("pki", "ca_validity_days")),
            ca_passphrase_env=env,
        )

    def libraries(self) -> tuple[Library, ...]:
        found = []
        names: dict[str, int] = {}
        project_dir = self.source.path.parent.resolve()
        for index, entry in enumerate(self.data.get("libraries") or []):
            path = ("libraries", index)
            if entry.startswith(("./", "../")):
                if not _LOCAL_LIBRARY.match(entry):
                    self.problem(path, f"{entry!r}: a library folder's path may hold letters, digits and . _ - + @ / "
                                 "only (it is written into platformio.ini and CMake)", "rename the folder")
                    continue
                folder = (project_dir / entry).resolve()
                if not folder.is_dir():
                    self.problem(path, f"{entry!r}: there is no such folder ({folder})",
                                 "give the library's folder relative to the spec, e.g. ../shared/my_sensor")
                    continue
                library = Library(entry=entry, path=folder)
            elif entry.startswith("/") or "://" in entry:
                self.problem(path, f"{entry!r}: a library is a registry entry (owner/name@version) or a folder "
                             "relative to the spec (./ or ../)", "write the folder relative to the spec, e.g. "
                             "../shared/my_sensor, so the project works wherever it is checked out")
                continue
            elif not _REGISTRY_LIBRARY.match(entry):
                self.problem(path, f"{entry!r} is not a registry library: owner/name with an optional @version "
                             "(letters, digits, spaces and . _ - + in the name; no ; # quotes or newlines)",
                             "e.g. adafruit/Adafruit BME280 Library@^2.2.4, or espressif/bme280@^0.1.0")
                continue
            else:
                library = Library(entry=entry)
            if library.name.lower() in names:
                self.problem(path, f"{library.name!r} is named twice in libraries:", "list each library once")
                continue
            names[library.name.lower()] = index
            found.append(library)
        return tuple(found)

    def build_flags(self) -> tuple[str, ...]:
        flags = []
        for index, flag in enumerate(self.data.get("build_flags") or []):
            if not _BUILD_FLAG.match(flag):
                self.problem(("build_flags", index), f"{flag!r} is not one compiler flag gen can pass on safely: a "
                             "flag starts with '-' and holds letters, digits and _ = . , : / + @ % - only (no spaces, "
                             "quotes, backslashes, ';' or '#')",
                             "one flag per entry; for a string, use vars: (gen_vars()->NAME) instead of -DNAME=\"...\"")
                continue
            flags.append(flag)
        return tuple(flags)

    def fleet_vars(self) -> dict[str, Var]:
        """The top-level vars:, checked."""
        found: dict[str, Var] = {}
        for name, value in (self.data.get("vars") or {}).items():
            var = self._var(("vars", name), name, value)
            if var is not None:
                found[name] = var
        return found

    def _var(self, path: tuple, name: Any, value: Any) -> Var | None:
        problem = _c_name_problem(name)
        if problem:
            self.problem(path, f"the name {name!r} {problem}" if problem.startswith("must be") else problem,
                         "rename it: it becomes a C name, gen_vars()->NAME")
            return None
        if isinstance(value, bool) or (isinstance(value, int) and VAR_INT_RANGE[0] <= value <= VAR_INT_RANGE[1]):
            return Var(name=name, value=value)
        if isinstance(value, int):
            self.problem(path, f"{value} does not fit a 32-bit integer ({VAR_INT_RANGE[0]} to {VAR_INT_RANGE[1]})",
                         "use a smaller number, or a string")
            return None
        if isinstance(value, str):
            if "\0" in value:
                self.problem(path, "contains a NUL character, which cannot pass through C strings", "remove it")
                return None
            if len(value.encode("utf-8")) > VAR_STRING_MAX:
                self.problem(path, f"is {len(value.encode())} bytes; a string var holds at most {VAR_STRING_MAX}")
                return None
            return Var(name=name, value=value)
        self.problem(path, f"{value!r} is not a string, an integer or a boolean")
        return None

    def device_vars(self, entry: dict, base: tuple, fleet: dict[str, Var]) -> tuple[Var, ...]:
        """The fleet's vars with this device's own values: each must be declared at the top level, of its type."""
        values = dict(fleet)
        for name, value in (entry.get("vars") or {}).items():
            path = base + ("vars", name)
            var = self._var(path, name, value)
            if var is None:
                continue
            declared = fleet.get(name)
            if declared is None:
                self.problem(path, f"{name!r} is not declared in the top-level vars:; every device's firmware reads "
                             "the same vars", f"add `{name}: <default>` to the top-level vars:")
            elif declared.type != var.type:
                self.problem(path, f"{name!r} is {_a(var.type)} here but {_a(declared.type)} in the top-level vars:",
                             f"give it {_a(declared.type)} value")
            else:
                values[name] = var
        return tuple(values[name] for name in fleet)

    def firmware_version(self) -> str:
        raw = self.data.get("firmware") or {}
        if "version" in raw:
            problem = version_problem(raw["version"])
            if problem:
                self.problem(("firmware", "version"), problem)
            return raw["version"]
        if "ota" not in self.data:
            return UNKNOWN_VERSION           # nothing reports it: no reason to ask git
        return project_version(self.source.path.parent)

    # --- one device -----------------------------------------------------------------------------------------
    def setting(self, entry: dict, base: tuple, key: str) -> tuple[Any, tuple]:
        """A device setting and the spec path it came from: the device's own entry, else the top level."""
        if key in entry:
            return entry[key], base + (key,)
        return self.data.get(key), (key,)

    def mapping_setting(self, entry: dict, base: tuple, key: str) -> tuple[dict, dict[str, tuple]]:
        merged: dict[str, Any] = {}
        origin: dict[str, tuple] = {}
        for value, path in ((self.data.get(key) or {}, (key,)), (entry.get(key) or {}, base + (key,))):
            for field, field_value in value.items():
                merged[field] = field_value
                origin[field] = path + (field,)
        return merged, origin

    def device(self, entry: dict, base: tuple, broker: Broker, pki: PkiOptions, version: str,
               build: tuple[tuple[Library, ...], tuple[str, ...], dict[str, Var]] = ((), (), {})) -> Device | None:
        device_id = entry["id"]
        problem = _device_id_problem(device_id)
        if problem:
            self.problem(base + ("id",), problem)
            return None

        target_name, target_path = self.setting(entry, base, "target")
        target_name = target_name or schema_default("target")
        target = self.catalogue.get(target_name)
        if target is None:
            self.problem(target_path if target_path != ("target",) or "target" in self.data else base + ("id",),
                         f"target {target_name!r} is not in the catalogue",
                         f"use one of: {', '.join(self.catalogue)}")
            return None

        wifi, wifi_origin = self.mapping_setting(entry, base, "wifi")
        ssid, password = wifi.get("ssid"), wifi.get("password", "")
        if ssid is None:
            self.problem(base, "has no wifi.ssid (set `wifi: {ssid: ...}` at the top level or for this device)")
        else:
            self._no_nul(wifi_origin["ssid"], ssid)
            if len(ssid.encode("utf-8")) > 32:
                self.problem(wifi_origin["ssid"], f"is {len(ssid.encode())} bytes; a WiFi SSID has at most 32")
        if password:
            self._no_nul(wifi_origin["password"], password)
            if not (8 <= len(password) <= 63 or re.fullmatch(r"[0-9A-Fa-f]{64}", password)):
                self.problem(wifi_origin["password"],
                             f"is {len(password)} characters; a WPA2 passphrase has 8 to 63 (or 64 hex digits)",
                             "use the network's real passphrase, or an empty string for an open network")
            elif not password.isascii():
                self.problem(wifi_origin["password"], "contains non-ASCII characters; WPA2 passphrases are ASCII")
            elif not password.isprintable():
                self.problem(wifi_origin["password"], "contains control characters; a WPA2 passphrase is printable "
                             "ASCII (IEEE 802.11i: characters 32 to 126)", "check the value in secrets.yaml")

        auth, _ = self.setting(entry, base, "auth")
        secrets_mode, _ = self.setting(entry, base, "secrets")
        keepalive, _ = self.setting(entry, base, "keepalive")
        ntp, ntp_path = self.setting(entry, base, "ntp")
        ntp = tuple(ntp) if ntp is not None else tuple(schema_default("ntp"))
        for index, server in enumerate(ntp):
            problem = host_problem(server)
            if problem:
                self.problem(ntp_path + (index,), f"{server!r} {problem}")

        status_raw, status_origin = self.mapping_setting(entry, base, "status")
        status = Status(
            topic=expand_topic(status_raw.get("topic", schema_default("status", "topic")), device_id),
            online=status_raw.get("online", schema_default("status", "online")),
            offline=status_raw.get("offline", schema_default("status", "offline")),
        )
        status_topic_path = status_origin.get("topic", base)
        self._check_topic_template(status_raw.get("topic", schema_default("status", "topic")), status_topic_path,
                                   status.topic, is_filter=False)
        for field in ("online", "offline"):
            if field in status_origin:
                self._no_nul(status_origin[field], status_raw[field])
        if status.online == status.offline:
            self.problem(status_origin.get("offline", status_origin.get("online", base)),
                         f"online and offline are both {status.online!r}: nothing could tell a device that is up from "
                         "one whose last will fired", "give status.online and status.offline different payloads")

        publish_raw, publish_path = self.setting(entry, base, "publish")
        publish = []
        for index, item in enumerate(publish_raw or []):
            path = publish_path + (index,)
            topic = expand_topic(item["topic"], device_id)
            self._check_topic_template(item["topic"], path + ("topic",), topic, is_filter=False)
            qos = item.get("qos", schema_default("publish", "qos"))
            publish.append(Publish(
                name=item["name"], topic=topic, qos=qos, retain=item.get("retain", schema_default("publish", "retain")),
                interval=item.get("interval", schema_default("publish", "interval")),
                max_payload=item.get("max_payload", schema_default("publish", "max_payload"))))

        subscribe_raw, subscribe_path = self.setting(entry, base, "subscribe")
        subscribe = []
        for index, item in enumerate(subscribe_raw or []):
            path = subscribe_path + (index,)
            topic_filter = expand_topic(item["filter"], device_id)
            self._check_topic_template(item["filter"], path + ("filter",), topic_filter, is_filter=True)
            qos = item.get("qos", schema_default("subscribe", "qos"))
            subscribe.append(Subscribe(name=item["name"], filter=topic_filter, qos=qos,
                                       max_payload=item.get("max_payload", schema_default("subscribe", "max_payload"))))

        ota = self.ota(device_id, base, auth or schema_default("auth"))
        own_topics = {status.topic: "its status topic"}
        log_settings, log_topic_path = self.log_settings(entry, base, device_id)
        if log_settings is not None:
            if log_settings.topic in own_topics:
                self.problem(log_topic_path, f"{log_settings.topic!r} is also {own_topics[log_settings.topic]}; "
                             "the log needs a topic of its own", "give log.topic its own topic")
            own_topics.setdefault(log_settings.topic, "its log topic")
        if ota is not None:
            for topic, what in ((ota.topic, "its OTA topic"), (ota.firmware_topic, "its firmware report topic")):
                if topic in own_topics:
                    self.problem(("ota",), f"{topic!r} is also {own_topics[topic]}; each needs a topic of its own",
                                 "give ota.topic and ota.firmware_topic their own topics")
                own_topics.setdefault(topic, what)
        for index, item in enumerate(publish):
            if item.topic in own_topics:
                self.problem(publish_path + (index, "topic"), f"{item.topic!r} is also {own_topics[item.topic]}; "
                             "each message type needs a topic of its own (the status topic carries the retained "
                             "birth and will)", "give this publish entry another topic")
            own_topics.setdefault(item.topic, f"the topic of publish entry {item.name!r}")
        for index, item in enumerate(subscribe):
            echoed = next((topic for topic in own_topics if filter_matches(item.filter, topic)), None)
            if ota is not None and echoed == ota.topic:
                self.problem(subscribe_path + (index, "filter"), f"{item.filter!r} matches {echoed!r}, the OTA "
                             "topic: update announcements go to the firmware's update handler, not to the app",
                             "narrow the filter (e.g. devices/{id}/cmd/#), or move ota.topic")
            elif echoed is not None:
                self.problem(subscribe_path + (index, "filter"), f"{item.filter!r} matches {echoed!r}, "
                             f"{own_topics[echoed]}: the device would receive every message it sends as a command",
                             "narrow the filter (e.g. devices/{id}/cmd/#), or publish elsewhere")

        seen_names: dict[str, tuple] = {}
        for kind, items, path_base in (("publish", publish_raw or [], publish_path),
                                       ("subscribe", subscribe_raw or [], subscribe_path)):
            for index, item in enumerate(items):
                name_path = path_base + (index, "name")
                problem = _c_name_problem(item["name"])
                if problem:
                    self.problem(name_path, problem)
                elif item["name"].lower() in seen_names:
                    self.problem(name_path, f"name {item['name']!r} is used twice in this device's topics (names "
                                 "are compared ignoring case: they become C function and macro names)",
                                 "give every publish and subscribe entry its own name")
                seen_names[item["name"].lower()] = name_path

        pki_raw, pki_origin = self.mapping_setting(entry, base, "pki")
        validity_days = pki_raw.get("validity_days", pki.validity_days)
        key_origin = pki_raw.get("key_origin", schema_default("pki", "key_origin"))
        renew_before_days = pki_raw.get("renew_before_days", max(1, validity_days // 3))
        device_pki = DevicePki(key_type=pki_raw.get("key_type", pki.key_type), validity_days=validity_days,
                               key_origin=key_origin, renew_before_days=renew_before_days)
        if "pki" in entry:
            for key in entry["pki"]:
                if key not in DEVICE_PKI_KEYS:
                    self.problem(base + ("pki", key), f"{key!r} applies to the whole spec, not to one device",
                                 "move it to the top-level pki:")
        auth_value = auth or schema_default("auth")
        if key_origin == "device":
            where = pki_origin.get("key_origin", base)
            if auth_value != "mtls":
                self.problem(where, f"a device that makes its own key needs auth: mtls, not {auth_value!r} (its "
                             "certificate is its whole identity; with a password Mosquitto could not bind the two)",
                             "set auth: mtls, or key_origin: host")
            if device_pki.key_type != "ec-p256":
                self.problem(pki_origin.get("key_type", where), "a device makes an EC P-256 key (the mbedTLS curve "
                             f"every ESP32 build has); key_type {device_pki.key_type!r} is for keys gen makes",
                             "use key_type: ec-p256, or key_origin: host")
            if broker.external:
                self.problem(where, "a device that makes its own key is provisioned through the broker gen "
                             "configures (its bootstrap listener and ACL); broker.external is run by someone else",
                             "use key_origin: host with an external broker")
            if ota is not None:
                self.problem(where, "a device that makes its own key cannot take updates over the air yet: the "
                             "update download presents the client certificate compiled into the firmware, and "
                             "this device's certificate comes from provisioning", "use key_origin: host with ota:, "
                             "or remove ota:")
            if renew_before_days >= validity_days:
                self.problem(pki_origin.get("renew_before_days", where), f"renew_before_days {renew_before_days} "
                             f"is not less than validity_days {validity_days}: the device would renew at once, "
                             "every time", "make it smaller than validity_days (unset: a third of it)")

        if key_origin == "device":
            for topic, path, is_filter in ([(status.topic, status_topic_path, False)]
                                           + [(p.topic, publish_path + (i, "topic"), False) for i, p in enumerate(publish)]
                                           + [(s.filter, subscribe_path + (i, "filter"), True)
                                              for i, s in enumerate(subscribe)]):
                reserved = reserved_topic_problem(topic, device_id, is_filter=is_filter)
                if reserved:
                    self.problem(path, f"{topic!r} {reserved}", "choose a topic outside gen/")

        device = Device(
            id=device_id, target=target, wifi=Wifi(ssid=ssid or "", password=password or ""), broker=broker,
            auth=auth_value, secrets=secrets_mode or schema_default("secrets"),
            keepalive=keepalive if keepalive is not None else schema_default("keepalive"), ntp=ntp, status=status,
            publish=tuple(publish), subscribe=tuple(subscribe), pki=device_pki, firmware_version=version, ota=ota,
            libraries=build[0], build_flags=build[1], vars=self.device_vars(entry, base, build[2]), log=log_settings,
            security=resolve_security((self.data["security"] or {}) if "security" in self.data else None,
                                      framework=target.framework, chip=target.chip,
                                      secrets=secrets_mode or schema_default("secrets"), has_ota=ota is not None,
                                      makes_own_key=key_origin == "device", problem=self.problem,
                                      reported=self.security_reported),
        )
        # What the firmware can carry is the firmware's to say (generator.firmware.limits).
        origins = {"publish": publish_path, "subscribe": subscribe_path, "ntp": ntp_path}
        for limit in device_problems(device):
            if not limit.where:
                path = base
            elif limit.where[0] == "status":
                path = status_origin.get(limit.where[1], base)
            elif limit.where[0] == "ota":
                path = limit.where if limit.where[1] in (self.data.get("ota") or {}) else ("ota",)
            else:
                path = origins[limit.where[0]] + limit.where[1:]
            self.problem(path, limit.message, limit.hint)
        return device

    def ota(self, device_id: str, base: tuple, auth: str) -> Ota | None:
        """The spec's `ota:` as this device sees it (topics expanded), or None without one."""
        if "ota" not in self.data:
            return None
        raw = self.data["ota"] or {}
        if auth == "password" and not self.ota_auth_reported:
            self.ota_auth_reported = True
            self.problem(base + ("auth",) if "auth" in self._entry_keys(base) else ("ota",),
                         f"device {device_id} uses auth 'password', but `gen ota serve` gives images only to a "
                         "device's own client certificate (mutual TLS), so this device could never be updated",
                         "use auth: mtls (or mtls+password), or remove ota:")
        topics = {}
        for key in ("topic", "firmware_topic"):
            template = raw.get(key, schema_default("ota", key))
            topics[key] = expand_topic(template, device_id)
            self._check_topic_template(template, ("ota", key) if key in raw else ("ota",), topics[key],
                                       is_filter=False)
        return Ota(port=raw.get("port", schema_default("ota", "port")), topic=topics["topic"],
                   firmware_topic=topics["firmware_topic"],
                   confirm_timeout=raw.get("confirm_timeout", schema_default("ota", "confirm_timeout")),
                   project=self.data["project"])

    def _entry_keys(self, base: tuple) -> set:
        node: Any = self.data
        for part in base:
            node = node[part]
        return set(node) if isinstance(node, dict) else set()

    def log_settings(self, entry: dict, base: tuple, device_id: str) -> tuple[LogSettings | None, tuple]:
        """The device's `log:` (merged over the spec's), or None when its level is none (the default)."""
        raw, origin = self.mapping_setting(entry, base, "log")
        template = raw.get("topic", schema_default("log", "topic"))
        topic_path = origin.get("topic", origin.get("level", base))
        level = raw.get("level", schema_default("log", "level"))
        if level == "none":
            return None, topic_path
        settings = LogSettings(level=level, topic=expand_topic(template, device_id), topic_template=template,
                               rate=raw.get("rate", schema_default("log", "rate")),
                               burst=raw.get("burst", schema_default("log", "burst")))
        self._check_topic_template(template, topic_path, settings.topic, is_filter=False)
        reserved = reserved_topic_problem(settings.topic, device_id, is_filter=False)
        if reserved:
            self.problem(topic_path, f"{settings.topic!r} {reserved}", "choose a topic outside gen/")
        return settings, topic_path

    def _check_topic_template(self, template: str, path: tuple, expanded: str, *, is_filter: bool) -> None:
        unknown = unknown_placeholders(template)
        if unknown:
            self.problem(path, f"uses {', '.join(unknown)}; the only placeholder is {{id}}")
            return
        problem = topic_filter_problem(expanded) if is_filter else topic_name_problem(expanded)
        if problem:
            what = "topic filter" if is_filter else "topic"
            self.problem(path, f"{what} {expanded!r} {problem}")

    # --- clients: ---------------------------------------------------------------------------------------------
    def clients(self, devices: list[tuple[Device, tuple]]) -> tuple[Client, ...]:
        """The spec's named identities besides the devices; their names clash with nothing, and what they may
        write leaves gen's OTA topics to gen.ota and gen's gen/ topics to gen."""
        taken = {device.id.lower() for device, _ in devices} | {name.lower() for name in SERVER_IDENTITIES}
        ota_topics = [device.ota.topic for device, _ in devices if device.ota is not None]
        found: list[Client] = []
        for index, entry in enumerate(self.data.get("clients") or []):
            base = ("clients", index)
            name = entry["name"]
            if name.lower() in taken or name.lower().startswith("gen"):
                self.problem(base + ("name",), f"{name!r} is already a device id or a server identity of gen",
                             "give the client a name of its own")
                continue
            taken.add(name.lower())
            subscribe, publish = tuple(entry.get("subscribe") or ()), tuple(entry.get("publish") or ())
            for key, topics in (("subscribe", subscribe), ("publish", publish)):
                for position, topic in enumerate(topics):
                    problem = topic_filter_problem(topic)
                    if problem:
                        self.problem(base + (key, position), f"topic filter {topic!r} {problem}")
                        continue
                    if key != "publish":
                        continue
                    ota = next((t for t in ota_topics if filter_matches(topic, t)), None)
                    if ota is not None:
                        self.problem(base + (key, position), f"{topic!r} would let {name} write the OTA topic "
                                     f"{ota!r}; only gen's OTA publisher (gen ota publish) writes those",
                                     "narrow it to the topics the client really writes, e.g. devices/+/cmd/#")
                    elif topic.split("/")[0] in ("gen", "+", "#"):
                        self.problem(base + (key, position), f"{topic!r} would let {name} write gen's own gen/ "
                                     "topics (provisioning)", "start it with a level of your own, e.g. devices/...")
            found.append(Client(name, subscribe, publish))
        return tuple(found)

    # --- across devices -------------------------------------------------------------------------------------
    def fleet_rules(self, devices: list[tuple[Device, tuple]]) -> None:
        by_lower: dict[str, tuple] = {}
        by_c_name: dict[str, str] = {}
        for device, base in devices:
            key = device.id.lower()
            if key in by_lower:
                self.problem(base + ("id",), f"device id {device.id!r} is used twice (ids are compared ignoring case,"
                             " because they name files)", "give every device its own id")
            by_lower[key] = base
            if device.c_name in by_c_name and by_c_name[device.c_name].lower() != key:
                self.problem(base + ("id",), f"{device.id!r} and {by_c_name[device.c_name]!r} become the same C "
                             f"identifier suffix {device.c_name!r}", "make them differ by more than '-' vs '_'")
            by_c_name[device.c_name] = device.id

        if devices:
            first, _ = devices[0]
            for device, base in devices[1:]:
                if device.auth != first.auth:
                    self.problem(base + ("auth",) if "auth" in self._entry_keys(base) else base,
                                 f"is {device.auth!r} but {first.id!r} uses {first.auth!r}; every device of a spec "
                                 "dials the same broker listener, and one Mosquitto listener serves one auth mode",
                                 "use one auth mode per spec (split the fleet into two specs and brokers/ports)")

        if devices and self.data["broker"].get("engine") == "rabbitmq":
            self.cluster_rules(devices)
        announced: dict[str, str] = {}
        for device, base in devices:
            if device.ota is None:
                continue
            sharer = announced.setdefault(device.ota.topic, device.id)
            if sharer != device.id:
                self.problem(("ota", "topic") if "topic" in (self.data.get("ota") or {}) else ("ota",),
                             f"devices {sharer!r} and {device.id!r} would share the OTA topic {device.ota.topic!r}, so "
                             "one would be told of the other's updates", "put {id} in ota.topic")
        owners = TopicIndex()
        for device, base in devices:
            reported = [device.ota.firmware_topic] if device.ota is not None else []
            for topic in [device.status.topic] + [p.topic for p in device.publish] + reported:
                other = owners.owner(topic)
                if other and other != device.id:
                    self.problem(base, f"publishes to {topic!r}, which device {other!r} publishes to as well; the ACL "
                                 "could not keep the two apart", "put {id} in the topic")
                owners.add(topic, device.id)
        for device, base in devices:
            for sub in device.subscribe:
                for topic, owner in owners.matching(sub.filter):
                    if owner != device.id:
                        self.problem(base, f"subscribes to {sub.filter!r}, which would read {owner!r}'s topic {topic!r}",
                                     "narrow the filter with {id}; each device may read only its own topics")
                        break


    def cluster_rules(self, devices: list[tuple[Device, tuple]]) -> None:
        """What gen's RabbitMQ cluster serves: certificate logins only (a password sent in CONNECT would replace
        the certificate's name there), from keys made on the host (the cluster has no bootstrap listener)."""
        first, base = devices[0]
        if first.auth != "mtls":
            self.problem(base + ("auth",) if "auth" in self._entry_keys(base) else base,
                         f"is {first.auth!r}, but gen's RabbitMQ cluster logs devices in by certificate only "
                         "(RabbitMQ lets a password sent in CONNECT replace the certificate's name)",
                         "use auth: mtls with engine: rabbitmq")
        for device, base in devices:
            if device.makes_own_key:
                self.problem(base, f"device {device.id!r} makes its own key (pki.key_origin: device), which needs "
                             "Mosquitto's bootstrap listener; the RabbitMQ cluster has none",
                             "use pki.key_origin: host with engine: rabbitmq")
                break


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _normal_host(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")


def resolve_spec(source: SpecSource) -> tuple[Spec | None, list[SpecProblem]]:
    resolver = _Resolver(source, load_catalogue())
    data = source.data
    broker = resolver.broker()
    pki = resolver.pki()
    version = resolver.firmware_version()
    build = (resolver.libraries(), resolver.build_flags(), resolver.fleet_vars())
    entries: list[tuple[Any, tuple]]
    if "device" in data:
        entries = [(data["device"], ("device",))]
    else:
        entries = [(entry, ("devices", index)) for index, entry in enumerate(data["devices"])]
    devices: list[tuple[Device, tuple]] = []
    for entry, base in entries:
        device = resolver.device(entry, base, broker, pki, version, build)
        if device is not None:
            devices.append((device, base))
    resolver.fleet_rules(devices)
    clients = resolver.clients(devices)
    if resolver.problems:
        return None, resolver.problems
    spec = Spec(path=source.path.resolve(), project=data["project"], broker=broker, pki=pki,
                devices=tuple(device for device, _ in devices), clients=clients)
    return spec, []
