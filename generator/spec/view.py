"""The resolved spec as `gen check` prints it: defaults filled, `{id}` expanded, every secret masked."""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

from generator.spec.model import Device, Spec
from generator.spec.source import SECRET_MASK


def _device_view(device: Device) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": device.id,
        "target": device.target.name,
        "framework": device.framework,
        "board": device.board,
        "chip": device.chip,
        "wifi": {"ssid": device.wifi.ssid, "password": device.wifi.password},
        "auth": device.auth,
        "client_id": device.client_id,
        "username": device.username,
        "secrets": device.secrets,
        "keepalive": device.keepalive,
        "ntp": list(device.ntp),
        "status": {"topic": device.status.topic, "online": device.status.online, "offline": device.status.offline,
                   "retain": True},
        "publish": [{"name": p.name, "topic": p.topic, "qos": p.qos, "retain": p.retain, "interval": p.interval,
                     "max_payload": p.max_payload} for p in device.publish],
        "subscribe": [{"name": s.name, "filter": s.filter, "qos": s.qos, "max_payload": s.max_payload}
                      for s in device.subscribe],
        "pki": {"key_type": device.pki.key_type, "validity_days": device.pki.validity_days,
                "key_origin": device.pki.key_origin,
                **({"renew_before_days": device.pki.renew_before_days} if device.makes_own_key else {})},
    }
    if device.ota is not None:
        view["firmware"] = {"version": device.firmware_version}
        view["ota"] = {"port": device.ota.port, "topic": device.ota.topic, "firmware_topic": device.ota.firmware_topic,
                       "confirm_timeout": device.ota.confirm_timeout}
    if device.libraries:
        view["libraries"] = [library.entry for library in device.libraries]
    if device.build_flags:
        view["build_flags"] = list(device.build_flags)
    if device.vars:
        view["vars"] = {var.name: var.value for var in device.vars}
    return view


def _broker_view(broker) -> dict[str, Any]:
    view: dict[str, Any] = {"host": broker.host, "names": list(broker.names), "port": broker.port,
                            "plaintext_port": broker.plaintext_port}
    if broker.max_connections is not None:
        view["max_connections"] = broker.max_connections
    for key in ("ca_file", "cert_file", "key_file"):
        if getattr(broker, key) is not None:
            view[key] = str(getattr(broker, key))
    if broker.external:
        view["external"] = True
    return view


def _provisioning_view(spec: Spec) -> dict[str, Any]:
    return {"provision_port": spec.broker.provision_port} if spec.provisions_devices else {}


def resolved_view(spec: Spec) -> dict[str, Any]:
    return {
        "project": spec.project,
        "broker": {**_broker_view(spec.broker), **_provisioning_view(spec)},
        "pki": {"dir": str(spec.pki.dir), "key_type": spec.pki.key_type, "validity_days": spec.pki.validity_days,
                "ca_validity_days": spec.pki.ca_validity_days, "ca_passphrase_env": spec.pki.ca_passphrase_env},
        "devices": [_device_view(device) for device in spec.devices],
    }


def mask_secrets(value: Any, secret_values: set[str], *, field: str = "") -> Any:
    """Replaces every secret: WiFi passwords always, and any value that came from secrets.yaml."""
    if isinstance(value, dict):
        return {key: mask_secrets(item, secret_values, field=key) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item, secret_values, field=field) for item in value]
    if isinstance(value, str) and value and (field == "password" or value in secret_values):
        return SECRET_MASK
    return value


def render_resolved_spec(spec: Spec, secret_values: set[str]) -> str:
    """The resolved spec as YAML: the text PyYAML's safe_dump writes (block style, keys in order, width 120), made
    without building a node per value, so that a 10,000-device fleet prints in a blink."""
    lines: list[str] = []
    _block(mask_secrets(resolved_view(spec), secret_values), "", lines)
    return "".join(lines)


# A string made only of these, and read back as a string, is written plain by PyYAML too (no space, so never wrapped
# at the width; no indicator first). Anything else is PyYAML's own scalar.
_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


@functools.lru_cache(maxsize=4096)
def _string(value: str) -> str:
    if _PLAIN.match(value) and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG:
        return value
    text = yaml.safe_dump(value, allow_unicode=True, width=120)
    if text.endswith("\n...\n"):
        text = text[:-5]
    if "\n" in text.rstrip("\n"):     # folded over lines: one line, escaped, whatever the indentation around it
        text = yaml.safe_dump(value, allow_unicode=True, default_style='"', width=float("inf"))
    return text.rstrip("\n")


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"the resolved spec holds a {type(value).__name__}: {value!r}")


def _block(value: Any, indent: str, lines: list[str]) -> None:
    """`value` (a mapping or a list) in block style, each line starting with `indent`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{_string(key)}:\n")
                _block(item, indent if isinstance(item, list) else indent + "  ", lines)
            else:
                lines.append(f"{indent}{_string(key)}: {_flow_or_scalar(item)}\n")
        return
    for item in value:
        if isinstance(item, (dict, list)) and item:
            nested: list[str] = []
            _block(item, indent + "  ", nested)
            first = nested[0][len(indent) + 2:]
            lines.append(f"{indent}- {first}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{indent}- {_flow_or_scalar(item)}\n")


def _flow_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)
