"""One device of a spec, from validated data to the typed Device: its settings (its own entry, else the top level),
`{id}` expanded in its topics, and the rules JSON Schema cannot say for one device (WiFi, topics of its own, C names,
the PKI of a device that makes its own key, what the firmware can carry). The rules across devices and the
whole-spec parts are generator.spec.resolve's."""

from __future__ import annotations

from typing import Any

from generator.core.topics import (
    expand_topic,
    filter_matches,
    topic_filter_problem,
    topic_name_problem,
    unknown_placeholders,
)
from generator.spec.catalogue import Target
from generator.spec.contract import WIFI_SSID_MAX_BYTES, wpa2_password_fits
from generator.spec.device_limits import device_problems
from generator.spec.model import (
    VAR_INT_RANGE,
    VAR_STRING_MAX,
    Broker,
    Device,
    DevicePki,
    Library,
    LogSettings,
    Ota,
    PkiOptions,
    Publish,
    Status,
    Subscribe,
    Var,
    Wifi,
)
from generator.spec.names import c_name_problem, device_id_problem, host_problem
from generator.spec.provisioning_protocol import reserved_topic_problem
from generator.spec.schema_check import schema_default
from generator.spec.security import resolve_security
from generator.spec.source import SpecProblem, SpecSource

DEVICE_PKI_KEYS = ("key_type", "validity_days", "key_origin", "renew_before_days")


class DeviceRules:
    """Resolves devices one at a time, collecting every problem (with the spec path it is about)."""

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

    # --- one device -----------------------------------------------------------------------------------------

    def device(self, entry: dict, base: tuple, broker: Broker, pki: PkiOptions, version: str,
               build: tuple[tuple[Library, ...], tuple[str, ...], dict[str, Var]] = ((), (), {})) -> Device | None:
        device_id = entry["id"]
        problem = device_id_problem(device_id)
        if problem:
            self.problem(base + ("id",), problem)
            return None
        target = self._target(entry, base)
        if target is None:
            return None
        wifi = self._wifi(entry, base)
        auth, _ = self.setting(entry, base, "auth")
        auth = auth or schema_default("auth")
        secrets_mode, _ = self.setting(entry, base, "secrets")
        keepalive, _ = self.setting(entry, base, "keepalive")
        ntp, ntp_path = self._ntp(entry, base)
        status, status_origin = self._status(entry, base, device_id)
        status_topic_path = status_origin.get("topic", base)
        publish_raw, publish_path = self.setting(entry, base, "publish")
        subscribe_raw, subscribe_path = self.setting(entry, base, "subscribe")
        publish = self._publish(publish_raw or [], publish_path, device_id)
        subscribe = self._subscribe(subscribe_raw or [], subscribe_path, device_id)
        ota = self.ota(device_id, base, auth)
        log, log_topic_path = self.log_settings(entry, base, device_id)
        self._own_topics_apart(status, ota, publish, publish_path, subscribe, subscribe_path, log, log_topic_path)
        self._topic_names(publish_raw or [], publish_path, subscribe_raw or [], subscribe_path)
        device_pki = self._device_pki(entry, base, pki, broker, ota, auth)
        if device_pki.key_origin == "device":
            topics = ([(status.topic, status_topic_path, False)]
                      + [(p.topic, publish_path + (i, "topic"), False) for i, p in enumerate(publish)]
                      + [(s.filter, subscribe_path + (i, "filter"), True) for i, s in enumerate(subscribe)])
            for topic, path, is_filter in topics:
                reserved = reserved_topic_problem(topic, device_id, is_filter=is_filter)
                if reserved:
                    self.problem(path, f"{topic!r} {reserved}", "choose a topic outside gen/")

        device = Device(
            id=device_id, target=target, wifi=wifi, broker=broker,
            auth=auth, secrets=secrets_mode or schema_default("secrets"),
            keepalive=keepalive if keepalive is not None else schema_default("keepalive"), ntp=ntp, status=status,
            publish=tuple(publish), subscribe=tuple(subscribe), pki=device_pki, firmware_version=version, ota=ota,
            libraries=build[0], build_flags=build[1], vars=self.device_vars(entry, base, build[2]), log=log,
            security=resolve_security((self.data["security"] or {}) if "security" in self.data else None,
                                      framework=target.framework, chip=target.chip,
                                      secrets=secrets_mode or schema_default("secrets"), has_ota=ota is not None,
                                      problem=self.problem,
                                      reported=self.security_reported),
        )
        self._firmware_limits(device, base, status_origin,
                              {"publish": publish_path, "subscribe": subscribe_path, "ntp": ntp_path})
        return device

    def _target(self, entry: dict, base: tuple) -> Target | None:
        target_name, target_path = self.setting(entry, base, "target")
        target_name = target_name or schema_default("target")
        target = self.catalogue.get(target_name)
        if target is None:
            self.problem(target_path if target_path != ("target",) or "target" in self.data else base + ("id",),
                         f"target {target_name!r} is not in the catalogue",
                         f"use one of: {', '.join(self.catalogue)}")
        return target

    def _wifi(self, entry: dict, base: tuple) -> Wifi:
        wifi, wifi_origin = self.mapping_setting(entry, base, "wifi")
        ssid, password = wifi.get("ssid"), wifi.get("password", "")
        if ssid is None:
            self.problem(base, "has no wifi.ssid (set `wifi: {ssid: ...}` at the top level or for this device)")
        else:
            self._no_nul(wifi_origin["ssid"], ssid)
            if len(ssid.encode("utf-8")) > WIFI_SSID_MAX_BYTES:
                self.problem(wifi_origin["ssid"],
                             f"is {len(ssid.encode())} bytes; a WiFi SSID has at most {WIFI_SSID_MAX_BYTES}")
        if password:
            self._no_nul(wifi_origin["password"], password)
            if not wpa2_password_fits(password):
                self.problem(wifi_origin["password"],
                             f"is {len(password)} characters; a WPA2 passphrase has 8 to 63 (or 64 hex digits)",
                             "use the network's real passphrase, or an empty string for an open network")
            elif not password.isascii():
                self.problem(wifi_origin["password"], "contains non-ASCII characters; WPA2 passphrases are ASCII")
            elif not password.isprintable():
                self.problem(wifi_origin["password"], "contains control characters; a WPA2 passphrase is printable "
                             "ASCII (IEEE 802.11i: characters 32 to 126)", "check the value in secrets.yaml")
        return Wifi(ssid=ssid or "", password=password or "")

    def _ntp(self, entry: dict, base: tuple) -> tuple[tuple[str, ...], tuple]:
        ntp, ntp_path = self.setting(entry, base, "ntp")
        ntp = tuple(ntp) if ntp is not None else tuple(schema_default("ntp"))
        for index, server in enumerate(ntp):
            problem = host_problem(server)
            if problem:
                self.problem(ntp_path + (index,), f"{server!r} {problem}")
        return ntp, ntp_path

    def _status(self, entry: dict, base: tuple, device_id: str) -> tuple[Status, dict[str, tuple]]:
        status_raw, status_origin = self.mapping_setting(entry, base, "status")
        template = status_raw.get("topic", schema_default("status", "topic"))
        status = Status(
            topic=expand_topic(template, device_id),
            online=status_raw.get("online", schema_default("status", "online")),
            offline=status_raw.get("offline", schema_default("status", "offline")),
        )
        self._check_topic_template(template, status_origin.get("topic", base), status.topic, is_filter=False)
        for field in ("online", "offline"):
            if field in status_origin:
                self._no_nul(status_origin[field], status_raw[field])
        if status.online == status.offline:
            self.problem(status_origin.get("offline", status_origin.get("online", base)),
                         f"online and offline are both {status.online!r}: nothing could tell a device that is up from "
                         "one whose last will fired", "give status.online and status.offline different payloads")
        return status, status_origin

    def _publish(self, items: list, publish_path: tuple, device_id: str) -> list[Publish]:
        publish = []
        for index, item in enumerate(items):
            path = publish_path + (index,)
            topic = expand_topic(item["topic"], device_id)
            self._check_topic_template(item["topic"], path + ("topic",), topic, is_filter=False)
            qos = item.get("qos", schema_default("publish", "qos"))
            publish.append(Publish(
                name=item["name"], topic=topic, qos=qos, retain=item.get("retain", schema_default("publish", "retain")),
                interval=item.get("interval", schema_default("publish", "interval")),
                max_payload=item.get("max_payload", schema_default("publish", "max_payload"))))
        return publish

    def _subscribe(self, items: list, subscribe_path: tuple, device_id: str) -> list[Subscribe]:
        subscribe = []
        for index, item in enumerate(items):
            path = subscribe_path + (index,)
            topic_filter = expand_topic(item["filter"], device_id)
            self._check_topic_template(item["filter"], path + ("filter",), topic_filter, is_filter=True)
            qos = item.get("qos", schema_default("subscribe", "qos"))
            subscribe.append(Subscribe(name=item["name"], filter=topic_filter, qos=qos,
                                       max_payload=item.get("max_payload", schema_default("subscribe", "max_payload"))))
        return subscribe

    def _own_topics_apart(self, status: Status, ota: Ota | None, publish: list[Publish], publish_path: tuple,
                          subscribe: list[Subscribe], subscribe_path: tuple, log: LogSettings | None,
                          log_topic_path: tuple) -> None:
        """Each message type the device sends has a topic of its own, and the device subscribes to none of them."""
        own_topics = {status.topic: "its status topic"}
        if log is not None:
            if log.topic in own_topics:
                self.problem(log_topic_path, f"{log.topic!r} is also {own_topics[log.topic]}; the log needs a topic of "
                             "its own", "give log.topic its own topic")
            own_topics.setdefault(log.topic, "its log topic")
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
        for index, sub in enumerate(subscribe):
            echoed = next((topic for topic in own_topics if filter_matches(sub.filter, topic)), None)
            if ota is not None and echoed == ota.topic:
                self.problem(subscribe_path + (index, "filter"), f"{sub.filter!r} matches {echoed!r}, the OTA "
                             "topic: update announcements go to the firmware's update handler, not to the app",
                             "narrow the filter (e.g. devices/{id}/cmd/#), or move ota.topic")
            elif echoed is not None:
                self.problem(subscribe_path + (index, "filter"), f"{sub.filter!r} matches {echoed!r}, "
                             f"{own_topics[echoed]}: the device would receive every message it sends as a command",
                             "narrow the filter (e.g. devices/{id}/cmd/#), or publish elsewhere")

    def _topic_names(self, publish_raw: list, publish_path: tuple, subscribe_raw: list, subscribe_path: tuple) -> None:
        """Publish and subscribe names become C function and macro names: C identifiers, unique ignoring case."""
        seen_names: dict[str, tuple] = {}
        for items, path_base in ((publish_raw, publish_path), (subscribe_raw, subscribe_path)):
            for index, item in enumerate(items):
                name_path = path_base + (index, "name")
                problem = c_name_problem(item["name"])
                if problem:
                    self.problem(name_path, problem)
                elif item["name"].lower() in seen_names:
                    self.problem(name_path, f"name {item['name']!r} is used twice in this device's topics (names "
                                 "are compared ignoring case: they become C function and macro names)",
                                 "give every publish and subscribe entry its own name")
                seen_names[item["name"].lower()] = name_path

    def _device_pki(self, entry: dict, base: tuple, pki: PkiOptions, broker: Broker, ota: Ota | None,
                    auth: str) -> DevicePki:
        pki_raw, pki_origin = self.mapping_setting(entry, base, "pki")
        validity_days = pki_raw.get("validity_days", pki.validity_days)
        key_origin = pki_raw.get("key_origin", schema_default("pki", "key_origin"))
        renew_before_days = pki_raw.get("renew_before_days", max(1, validity_days // 3))
        device_pki = DevicePki(key_type=pki_raw.get("key_type", pki.key_type), validity_days=validity_days,
                               key_origin=key_origin, renew_before_days=renew_before_days)
        for key in entry.get("pki") or {}:
            if key not in DEVICE_PKI_KEYS:
                self.problem(base + ("pki", key), f"{key!r} applies to the whole spec, not to one device",
                             "move it to the top-level pki:")
        if key_origin != "device":
            return device_pki
        where = pki_origin.get("key_origin", base)
        if auth != "mtls":
            self.problem(where, f"a device that makes its own key needs auth: mtls, not {auth!r} (its "
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
        return device_pki

    def _var(self, path: tuple, name: Any, value: Any) -> Var | None:
        problem = c_name_problem(name)
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

    def _firmware_limits(self, device: Device, base: tuple, status_origin: dict[str, tuple],
                         origins: dict[str, tuple]) -> None:
        """What the firmware can carry is the firmware's to say (generator.spec.device_limits)."""
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


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"
