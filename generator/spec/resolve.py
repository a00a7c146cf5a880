"""From validated spec data to the Spec model: per-device overrides merged, defaults filled, `{id}` expanded, and
the rules JSON Schema cannot say (ids, topics, QoS per framework, fleet isolation, names for C and configs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from generator.core.topics import TopicIndex, filter_matches, topic_filter_problem
from generator.spec.catalogue import load_catalogue
from generator.spec.device_rules import DeviceRules
from generator.spec.firmware_version import UNKNOWN_VERSION, project_version, version_problem
from generator.spec.contract import SERVER_IDENTITIES
from generator.spec.model import Broker, Client, Device, Library, PkiOptions, Spec, Var
from generator.spec.names import dialled_host_problem, host_problem, normal_host, trailing_dot_problem
from generator.spec.schema_check import schema_default
from generator.spec.source import SpecProblem, SpecSource

# libraries: a registry entry (owner/name, an optional @version) or a folder of the user's (./ or ../). What reaches
# platformio.ini, idf_component.yml and CMake: no ';' or '#' (INI comments), quotes, backslashes or newlines.
_REGISTRY_LIBRARY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9 _.+-]*"
                               r"(@[A-Za-z0-9 ^~<>=!*.,_+-]+)?$")
_LOCAL_LIBRARY = re.compile(r"^\.\.?/[A-Za-z0-9._/+@-]+$")


def _version_requirement(text: str) -> bool:
    """Whether PlatformIO (lib_deps) and the ESP-IDF component manager read `text` as a version requirement: both
    parse it with semantic_version's SimpleSpec (PlatformIO's package spec; idf-component-manager's version specs)."""
    import semantic_version   # PlatformIO's own dependency; imported only for a spec that gives a version

    try:
        semantic_version.SimpleSpec(text.strip())
    except ValueError:
        return False
    return True
# build_flags: one flag each, starting with '-', nothing a build file would read as a separator, quote or comment.
_BUILD_FLAG = re.compile(r"^-[A-Za-z0-9_=.,:/+@%-]+$")


_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")  # an Erlang node name's host part, unquoted


class _Resolver(DeviceRules):
    """The whole spec: its broker, PKI and firmware version, every device (DeviceRules), the rules across devices."""

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
            elif (dotted := trailing_dot_problem(name)) is not None:
                self.problem(("broker", "names", index), f"{name!r} {dotted[0]}", dotted[1])
            elif normal_host(name) not in {normal_host(n) for n in names}:
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
            self.problem(("broker", "provision_port"),
                         f"is the same as the {'TLS' if provision_port == port else 'plaintext'} "
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
            elif normal_host(node) in {normal_host(n) for n in nodes}:
                self.problem(("broker", "nodes", index), f"{node!r} is listed twice", "list each node once")
            else:
                nodes.append(node)
                if normal_host(node) not in {normal_host(n) for n in names}:
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
                if library.version is not None and not _version_requirement(library.version):
                    self.problem(path, f"{entry!r}: {library.version!r} is not a version requirement that PlatformIO "
                                 "and the ESP-IDF component manager read", "e.g. ^2.2.4, ~1.3.0, >=1.0,<2, or 1.2.3")
                    continue
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
                        self.problem(base, f"subscribes to {sub.filter!r}, which would read {owner!r}'s "
                                           f"topic {topic!r}",
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
                where = base + ("pki",) if "pki" in self._entry_keys(base) else ("pki", "key_origin")
                self.problem(where, f"device {device.id!r} makes its own key (pki.key_origin: device), which needs "
                             "Mosquitto's bootstrap listener; the RabbitMQ cluster has none",
                             "use pki.key_origin: host with engine: rabbitmq")
                break


def resolve_spec(source: SpecSource) -> tuple[Spec | None, list[SpecProblem]]:
    resolver = _Resolver(source, load_catalogue())
    data = source.data
    broker = resolver.broker()
    pki = resolver.pki()
    version = resolver.firmware_version()
    build = (resolver.libraries(), resolver.build_flags(), resolver.fleet_vars())
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
