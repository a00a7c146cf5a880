"""What CI may hold: per-device credentials, never a CA key.

A CI build never opens the PKI (`gen build SPEC --without-pki`): it cannot issue, renew or sign anything.
- `secrets: nvs` devices need nothing at all: their app image holds no key, password or WiFi credential, and each
  device's NVS image is made where the PKI lives (`gen generate`, `gen flash`).
- `secrets: embed` devices compile their credentials in, so CI gets a bundle of exactly those: for each such device
  its CA file, client cert, client key and MQTT password, made where the PKI lives by `gen ci github`, kept in one
  GitHub secret. A device missing from the bundle is an error, not a certificate minted in CI.

    bundle = credentials_bundle(spec)                 # where the PKI lives: issues what is missing, as gen generate
    text = encode_bundle(bundle)                      # base64(gzip(JSON)): the GitHub secret's value
    devices = ci_device_credentials(spec, decode_bundle(text, "..."))   # in CI: per device, no PKI

The bundle is checked against GitHub's 48 KB limit for one secret before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from dataclasses import dataclass
from typing import Mapping

from generator.core.errors import UserError
from generator.pki.credentials import ClientCredentials
from generator.pki.spec_credentials import spec_credentials

BUNDLE_VERSION = 1
GITHUB_SECRET_LIMIT = 48 * 1024           # bytes: GitHub refuses larger secret values


@dataclass(frozen=True)
class CredentialsBundle:
    project: str
    devices: Mapping[str, ClientCredentials]   # secrets: embed devices only


def embedded_devices(spec) -> list:
    return [device for device in spec.devices if device.secrets == "embed"]


def credentials_bundle(spec) -> CredentialsBundle:
    """The credentials of every `secrets: embed` device, from the PKI (issuing what is missing, as generate does)."""
    credentials = spec_credentials(spec)
    return CredentialsBundle(spec.project, {device.id: credentials.devices[device.id]
                                            for device in embedded_devices(spec)})


def encode_bundle(bundle: CredentialsBundle) -> str:
    document = {"version": BUNDLE_VERSION, "project": bundle.project, "devices": {
        device_id: {"ca_pem": c.ca_pem.decode(), "cert_pem": c.cert_pem.decode() if c.cert_pem else None,
                    "key_pem": c.key_pem.decode() if c.key_pem else None, "password": c.password}
        for device_id, c in bundle.devices.items()}}
    raw = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()


def decode_bundle(text: str, source: str) -> CredentialsBundle:
    try:
        document = json.loads(gzip.decompress(base64.b64decode(text.strip(), validate=True)))
        devices = {device_id: ClientCredentials(name=device_id, ca_pem=entry["ca_pem"].encode(),
                                                cert_pem=entry["cert_pem"].encode() if entry["cert_pem"] else None,
                                                key_pem=entry["key_pem"].encode() if entry["key_pem"] else None,
                                                password=entry["password"])
                   for device_id, entry in document["devices"].items()}
    except (binascii.Error, OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{source} is not a credentials bundle written by `gen ci github`",
                        hint="set the secret again from the file `gen ci github SPEC` writes") from None
    if document.get("version") != BUNDLE_VERSION:
        raise UserError(f"{source} is a credentials bundle of another version", hint="run `gen ci github SPEC` again")
    return CredentialsBundle(document.get("project", ""), devices)


def check_secret_size(spec, encoded: str, secret_name: str) -> None:
    """GitHub refuses a secret over 48 KB: say so, and how to split, before anything is written."""
    size = len(encoded)
    if size <= GITHUB_SECRET_LIMIT:
        return
    count = len(embedded_devices(spec))
    per_device = max(1, size // max(1, count))
    fits = max(1, (GITHUB_SECRET_LIMIT * 9 // 10) // per_device)
    raise UserError(
        f"the credentials of the {count} `secrets: embed` devices are {size // 1024} KB encoded, more than the "
        f"48 KB GitHub allows in one secret ({secret_name})",
        hint=f"split the fleet into specs of at most {fits} embed devices each (each spec gets its own secret), or "
             "switch the fleet to `secrets: nvs`: its app image holds no secret and CI needs none")


def ci_device_credentials(spec, bundle: CredentialsBundle | None) -> dict[str, ClientCredentials]:
    """Each device's credentials for a build that never opens the PKI: `nvs` devices need none (their image holds
    none); `embed` devices take theirs from the bundle, and one missing from it is an error."""
    result: dict[str, ClientCredentials] = {}
    missing = []
    for device in spec.devices:
        if device.secrets == "nvs":
            result[device.id] = ClientCredentials(name=device.id, ca_pem=b"", cert_pem=None, key_pem=None,
                                                  password=None)
        elif bundle is not None and device.id in bundle.devices:
            result[device.id] = bundle.devices[device.id]
        else:
            missing.append(device.id)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        if bundle is None:
            raise UserError(f"device {shown} embeds its credentials (secrets: embed), and this build may not open "
                            "the PKI (--without-pki) and was given no credentials bundle",
                            hint="pass --credentials FILE, the bundle `gen ci github SPEC` writes where the PKI lives")
        raise UserError(f"device {shown} is not in the credentials bundle: a build without the PKI never issues a "
                        "certificate (a cert minted in CI could never be revoked by the PKI)",
                        hint="where the PKI lives: run `gen ci github SPEC` again and set the secret it names from "
                             "the bundle it writes")
    return result
