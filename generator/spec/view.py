"""The resolved spec as `gen check` prints it: defaults filled, `{id}` expanded, every secret masked."""

from __future__ import annotations

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
    view = mask_secrets(resolved_view(spec), secret_values)
    # libyaml's emitter writes what PyYAML's own writes for printable ASCII (not always beyond it, e.g. an emoji
    # SSID), many times faster: a large fleet is printed by it.
    fast = getattr(yaml, "CSafeDumper", None)
    dumper = fast if fast is not None and _printable_ascii(view) else yaml.SafeDumper
    return yaml.dump(view, Dumper=dumper, sort_keys=False, allow_unicode=True, width=120)


def _printable_ascii(value: Any) -> bool:
    if isinstance(value, str):
        return value.isascii() and value.isprintable()
    if isinstance(value, dict):
        return all(_printable_ascii(key) and _printable_ascii(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_printable_ascii(item) for item in value)
    return True
