"""OUT/manifest.json: what was generated, where, for whom. Paths are relative to the manifest; no secrets, ever.

Contract (DESIGN.md): {"version": 1, "project", "broker": {"host", "port", "config", "ca", "external"}, "devices": [{"id",
"target", "framework", "board", "auth", "client_id", "username", "firmware_dir", "ca", "client_cert",
"client_key", "nvs", "publish": [...], "subscribe": [...], "status_topic"}]}. `gen build` adds "artifacts".
"config" is null for a broker gen does not run (broker.external).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from generator.spec import Device, Spec

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
BROKER_DIR = "broker"          # OUT/broker/: what the broker machine needs


def device_dir(device_id: str) -> str:
    return f"devices/{device_id}"


def firmware_dir(device_id: str) -> str:
    return f"{device_dir(device_id)}/firmware"


def device_entry(device: Device, *, has_nvs: bool, cert_serial: int | None, cert_not_after: str | None) -> dict[str, Any]:
    base = device_dir(device.id)
    return {
        "id": device.id,
        "target": device.target.name,
        "framework": device.framework,
        "board": device.board,
        "chip": device.chip,
        "platform": device.target.platform,
        "auth": device.auth,
        "secrets": device.secrets,
        "client_id": device.client_id,
        "username": device.username,
        "firmware_dir": firmware_dir(device.id),
        "ca": f"{base}/ca.pem",
        "client_cert": f"{base}/client.pem" if device.uses_client_cert else None,
        "client_key": f"{base}/client.key" if device.uses_client_cert else None,
        "cert_serial": f"{cert_serial:X}" if cert_serial is not None else None,
        "cert_not_after": cert_not_after,
        "nvs": f"{base}/nvs.bin" if has_nvs else None,
        "publish": [{"name": p.name, "topic": p.topic, "qos": p.qos, "retain": p.retain, "interval": p.interval}
                    for p in device.publish],
        "subscribe": [{"name": s.name, "filter": s.filter, "qos": s.qos} for s in device.subscribe],
        "status_topic": device.status.topic,
    }


def render_manifest(spec: Spec, devices: list[dict[str, Any]], *, broker_dir: str = BROKER_DIR) -> bytes:
    document = {
        "version": MANIFEST_VERSION,
        "project": spec.project,
        "spec": str(spec.path),
        "broker": {
            "host": spec.broker.host,
            "names": list(spec.broker.names),
            "port": spec.broker.port,
            "config": None if spec.broker.external else f"{broker_dir}/mosquitto.conf",
            "external": spec.broker.external,
            "ca": f"{broker_dir}/ca.pem",
        },
        "devices": devices,
    }
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


def read_manifest(out_dir: Path) -> dict[str, Any]:
    from generator.errors import UserError

    path = Path(out_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist", hint="run `gen generate SPEC` first")
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable manifest: {error}", hint="run `gen generate SPEC` again")
