"""`gen generate`: the spec and its PKI, turned into every file both ends of the link need.

    OUT/broker/                       mosquitto.conf, certs, CRL, passwd, acl, operator README
    OUT/devices/<id>/firmware/        the device's PlatformIO project
    OUT/devices/<id>/ca.pem, client.pem, client.key (0600)
    OUT/devices/<id>/nvs.bin          the NVS partition image (secrets: nvs), 0600
    OUT/manifest.json

Everything is rendered in memory first (pure functions of spec + credentials), then written; a failure while
rendering writes nothing. The PKI lives next to the spec, never in OUT: deleting OUT loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.credentials import BrokerCredentials, ClientCredentials, SpecCredentials
from generator.files import SECRET_MODE, write_tree
from generator.manifest import BROKER_DIR, MANIFEST_NAME, device_dir, device_entry, firmware_dir, render_manifest
from generator.spec import BACKEND_IDENTITY, Device, Spec


def spec_credentials(spec: Spec) -> SpecCredentials:
    """Issues what is missing in the spec's PKI and reuses everything else. A broker certificate from elsewhere
    (broker.ca_file, cert_file, key_file; generator.broker_trust) replaces the PKI's broker cert and root."""
    from generator.broker_trust import broker_trust
    from generator.pki_store import ensure_spec_identities

    trust = broker_trust(spec)           # checked before anything is issued
    identities = ensure_spec_identities(spec)
    device_trust = trust.ca_pem if trust else identities.ca_pem
    if trust is not None and trust.cert_pem is not None:
        broker_cert, broker_key = trust.cert_pem, trust.key_pem
    elif identities.broker is not None:
        broker_cert, broker_key = identities.broker.cert_pem, identities.broker.key_pem
    else:
        broker_cert = broker_key = None
    broker = BrokerCredentials(
        cafile_pem=identities.broker_cafile_pem,
        cert_pem=broker_cert,
        key_pem=broker_key,
        crl_pem=identities.crl_pem,
        passwords=tuple(sorted(identities.passwords.items())),
        salt_key=broker_key or identities.backend.key_pem,   # the backend's key when the broker's is not ours
    )
    devices = {}
    for device in spec.devices:
        identity = identities.devices.get(device.id) if device.uses_client_cert else None
        devices[device.id] = ClientCredentials(
            name=device.id,
            ca_pem=device_trust,
            cert_pem=identity.cert_pem if identity else None,
            key_pem=identity.key_pem if identity else None,
            password=identities.passwords.get(device.id) if device.uses_password else None,
            cert_serial=identity.serial if identity else None,
            cert_not_after=identity.not_after if identity else None,
        )
    backend = ClientCredentials(
        name=BACKEND_IDENTITY,
        ca_pem=device_trust,
        cert_pem=identities.backend.cert_pem,
        key_pem=identities.backend.key_pem,
        password=identities.passwords.get(BACKEND_IDENTITY),
        cert_serial=identities.backend.serial,
        cert_not_after=identities.backend.not_after,
    )
    return SpecCredentials(broker=broker, devices=devices, backend=backend)


@dataclass(frozen=True)
class GeneratedOutput:
    out_dir: Path
    changed: tuple[str, ...]          # paths (relative to OUT) whose content changed in this run
    devices: tuple[str, ...]          # device ids generated

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME


def render_device_files(device: Device, credentials: ClientCredentials, *, spec_name: str, with_nvs: bool = True
                        ) -> tuple[dict[str, bytes], dict[str, int], frozenset[str], bool]:
    """All of one device's files under OUT/: (files, modes, user-owned paths, has_nvs). `with_nvs=False`: no NVS
    image (a build without the PKI: it is made where the PKI lives)."""
    from generator.firmware import render_firmware

    base = device_dir(device.id)
    fw_base = firmware_dir(device.id)
    project = render_firmware(device, credentials, spec_name=spec_name)
    files: dict[str, bytes] = {f"{fw_base}/{path}": content for path, content in project.generated.items()}
    user_owned = {f"{fw_base}/{path}": content for path, content in project.user_owned.items()}
    files.update(user_owned)
    modes: dict[str, int] = {}
    if credentials.ca_pem:
        files[f"{base}/ca.pem"] = credentials.ca_pem
    if credentials.cert_pem is not None and credentials.key_pem is not None:
        files[f"{base}/client.pem"] = credentials.cert_pem
        files[f"{base}/client.key"] = credentials.key_pem
        modes[f"{base}/client.key"] = SECRET_MODE
    # Generated sources that embed the key and passwords (`secrets: embed`) are private too.
    for path in project.secret_files:
        modes[f"{fw_base}/{path}"] = SECRET_MODE
    has_nvs = device.secrets == "nvs" and with_nvs
    if has_nvs:
        from generator.nvs_image import render_nvs_image

        files[f"{base}/nvs.bin"] = render_nvs_image(device, credentials)
        modes[f"{base}/nvs.bin"] = SECRET_MODE
    return files, modes, frozenset(user_owned), has_nvs


def generate(spec: Spec, out_dir: Path | None = None, *, device_ids: list[str] | None = None) -> GeneratedOutput:
    """Everything: the PKI issues what is missing; broker files, firmware projects, NVS images, manifest."""
    from generator.broker import render_broker

    credentials = spec_credentials(spec)
    broker_files = render_broker(spec, credentials.broker)
    return _write_output(spec, out_dir, device_ids, credentials.devices, broker_files.files, broker_files.modes,
                         with_nvs=True)


def generate_without_pki(spec: Spec, out_dir: Path | None = None, *, device_ids: list[str] | None = None,
                         bundle=None) -> GeneratedOutput:
    """What CI may make (generator.ci_credentials): the PKI is never opened, so nothing is issued or signed; the
    firmware projects and the manifest only, no broker files and no NVS images. `secrets: embed` devices take
    their credentials from `bundle`."""
    from generator.ci_credentials import ci_device_credentials

    return _write_output(spec, out_dir, device_ids, ci_device_credentials(spec, bundle), {}, {}, with_nvs=False)


def _write_output(spec: Spec, out_dir: Path | None, device_ids: list[str] | None,
                  credentials: dict[str, ClientCredentials], broker_files: dict[str, bytes],
                  broker_modes: dict[str, int], *, with_nvs: bool) -> GeneratedOutput:
    out = Path(out_dir) if out_dir is not None else spec.default_out_dir
    selected = [spec.device(device_id) for device_id in device_ids] if device_ids else list(spec.devices)
    files: dict[str, bytes] = {f"{BROKER_DIR}/{path}": content for path, content in broker_files.items()}
    modes: dict[str, int] = {f"{BROKER_DIR}/{path}": mode for path, mode in broker_modes.items()}
    user_owned: set[str] = set()
    entries = []
    for device in spec.devices:
        device_credentials = credentials[device.id]
        if device in selected:
            device_files, device_modes, owned, has_nvs = render_device_files(device, device_credentials,
                                                                             spec_name=spec.path.name,
                                                                             with_nvs=with_nvs)
            files.update(device_files)
            modes.update(device_modes)
            user_owned |= owned
        else:
            has_nvs = device.secrets == "nvs" and with_nvs
        not_after = device_credentials.cert_not_after.isoformat() if device_credentials.cert_not_after else None
        entries.append(device_entry(device, has_nvs=has_nvs, cert_serial=device_credentials.cert_serial,
                                    cert_not_after=not_after))
    files[MANIFEST_NAME] = render_manifest(spec, entries)

    changed = write_tree(out, files, modes=modes, keep_existing=frozenset(user_owned))
    return GeneratedOutput(out_dir=out, changed=tuple(changed), devices=tuple(d.id for d in selected))
