"""OUT/ laid out by hand the way `gen generate` lays it out (manifest from generator.output.manifest, one small PlatformIO
project per device, client.pem, nvs.bin), so the build can be tested without rendering real firmware."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from generator.output.layout import device_dir, firmware_dir
from generator.output.manifest import device_record, spec_manifest, write_manifest
from generator.core.paths import PROJECT_ROOT
from generator.spec import Spec, load_spec

EXAMPLES_DIR = PROJECT_ROOT / "projects" / "examples"
NOT_AFTER = dt.datetime(2031, 5, 17, 12, 0, tzinfo=dt.timezone.utc)


def copy_example(name: str, destination: Path) -> Path:
    """The example project copied to destination; returns the path of its device.yaml."""
    shutil.copytree(EXAMPLES_DIR / name, destination, ignore=shutil.ignore_patterns("pki", "build"))
    return destination / "device.yaml"


def device_cert(device_id: str, serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(NOT_AFTER - dt.timedelta(days=825)).not_valid_after(NOT_AFTER)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def firmware_project(device, shared: bool) -> dict[str, bytes]:
    target = device.target
    ini = f"[env:{target.name}]\nplatform = {target.platform}\nboard = {target.board}\nframework = {target.framework}\n"
    who = "the fleet" if shared else device.id
    main = f'// firmware for {who}\n#include "app_hooks.h"\nvoid setup() {{}}\nvoid loop() {{}}\n'
    return {"platformio.ini": ini.encode(), "src/main.cpp": main.encode(), "src/app_hooks.h": b"#pragma once\n"}


def lay_out(spec: Spec, out_dir: Path) -> Path:
    """Writes OUT/ for every device of the spec; returns out_dir."""
    entries = []
    for serial, device in enumerate(spec.devices, start=0x1000):
        uses_nvs = device.secrets == "nvs"
        for relative, content in firmware_project(device, shared=uses_nvs).items():
            path = out_dir / firmware_dir(device.id) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        base = out_dir / device_dir(device.id)
        if device.uses_client_cert:
            (base / "client.pem").write_bytes(device_cert(device.id, serial))
        if uses_nvs:
            size = 0x5000 if device.framework == "arduino" else 0x6000
            (base / "nvs.bin").write_bytes(((device.id.encode() + b"\0") * size)[:size])
        entries.append(device_record(device, cert_serial=serial if device.uses_client_cert else None,
                                     cert_not_after=NOT_AFTER.isoformat() if device.uses_client_cert else None))
    write_manifest(out_dir, spec_manifest(spec, tuple(entries), generated_files=()))
    return out_dir


def example_out(name: str, tmp_path: Path) -> tuple[Spec, Path]:
    spec = load_spec(copy_example(name, tmp_path / name))
    return spec, lay_out(spec, spec.default_out_dir)
