"""Credentials and devices for the firmware and NVS tests: a throwaway EC P-256 CA with one leaf per device, and
the example specs. The golden tests use the fixed set under tests/golden/credentials/ so their files stay stable."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from generator.pki.credentials import ClientCredentials
from generator.spec import Device, load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "projects" / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLE_SPECS = sorted(EXAMPLES.glob("*/device.yaml"))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@lru_cache(maxsize=1)
def fake_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_leaf(common_name: str, key_type: str = "ec-p256") -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    ca_key, ca_cert = fake_ca()
    key = rsa.generate_private_key(65537, 2048) if key_type == "rsa-2048" else ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem(cert), key_pem


def ota_public_key(device: Device) -> bytes | None:
    """With `ota:`, a fixed signing key's public half (only it is committed: tests/golden/credentials/)."""
    return (GOLDEN / "credentials" / "ota-signing.pem").read_bytes() if device.ota is not None else None


def credentials_for(device: Device, *, ca_pem: bytes | None = None) -> ClientCredentials:
    cert_pem = key_pem = None
    if device.uses_client_cert:
        cert_pem, key_pem = issue_leaf(device.id, device.pki.key_type)
    return ClientCredentials(name=device.id, ca_pem=ca_pem or pem(fake_ca()[1]), cert_pem=cert_pem, key_pem=key_pem,
                             password="p4ss-\"word\\??/" if device.uses_password else None)


def golden_credentials(device: Device) -> ClientCredentials:
    """A fixed credential set (committed PEM files), so golden files do not change between runs."""
    folder = GOLDEN / "credentials"
    return ClientCredentials(
        name=device.id, ca_pem=(folder / "ca.pem").read_bytes(),
        cert_pem=(folder / "client.pem").read_bytes() if device.uses_client_cert else None,
        key_pem=(folder / "client-key.pem").read_bytes() if device.uses_client_cert else None,
        password="golden-password" if device.uses_password else None)


def write_firmware_project(project_dir: Path, device: Device, credentials: ClientCredentials | None = None) -> Path:
    """A device's firmware laid out as `gen generate` lays it out in a project folder: the app starter at
    project_dir/src/app.* (unless there is one), the generated PlatformIO project at
    project_dir/build/devices/<id>/firmware, compiling project_dir's src/, lib/ and components/. Returns the
    firmware folder."""
    from generator.firmware.render import USER_APP_SOURCE, render_app_starter, render_firmware
    from generator.output.firmware_projects import app_layout
    from generator.output.layout import firmware_dir

    root = project_dir / "build" / firmware_dir(device.id)
    project = render_firmware(device, credentials or credentials_for(device), spec_name="device.yaml",
                              app=app_layout(root, project_dir), ota_public_key=ota_public_key(device))
    for path, content in project.generated.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    app = project_dir / USER_APP_SOURCE[device.framework]
    if not app.exists():
        app.parent.mkdir(parents=True, exist_ok=True)
        app.write_bytes(render_app_starter([device]))
    return root


@lru_cache(maxsize=None)
def example_devices(name: str) -> tuple[Device, ...]:
    environ = {}
    return load_spec(EXAMPLES / name / "device.yaml", environ).devices


# The multi-file app of tests/data/multi_file_app, in a project folder of its own (tests of the app directory).
APPS = Path(__file__).resolve().parent / "data" / "multi_file_app"
EXAMPLE = {"arduino": "arduino-mtls", "espidf": "espidf-mtls"}


def multi_file_project(tmp_path: Path, framework: str) -> Path:
    """A project folder holding the multi-file app of tests/data, and its generated firmware project."""
    shutil.copytree(APPS / framework, tmp_path / "greenhouse")
    return write_firmware_project(tmp_path / "greenhouse", example_devices(EXAMPLE[framework])[0])


_SECURITY_SPEC = """\
project: shed
target: {target}
wifi: {{ssid: shed-wifi, password: "pass-phrase-123"}}
broker: {{host: mqtt.example.com}}
auth: mtls
secrets: nvs
{ota}{pki}firmware: {{version: 1.0.0}}
security:
{security}
device:
  id: shed-01
"""


def write_security_spec(folder: Path, security: str, target: str, *, ota: bool = False,
                        key_origin: str | None = None) -> Path:
    """A one-device spec with this `security:` body (its first line is line 9, one more with `ota: {}`, two more
    with `pki: {key_origin: ...}`)."""
    path = Path(folder) / "device.yaml"
    pki = f"pki:\n  key_origin: {key_origin}\n" if key_origin else ""
    path.write_text(_SECURITY_SPEC.format(target=target, security=security, ota="ota: {}\n" if ota else "",
                                          pki=pki))
    return path
