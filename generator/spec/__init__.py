"""The spec concept: reading a device.yaml, validating it, and the typed Spec everything else reads.

    spec = load_spec(Path("projects/greenhouse/device.yaml"))
"""

from __future__ import annotations

from pathlib import Path

from generator.spec.contract import (
    ADMIN_IDENTITY,
    AUTH_MODES,
    BACKEND_IDENTITY,
    DOCTOR_IDENTITY,
    KEY_ORIGINS,
    KEY_TYPES,
    OTA_IDENTITY,
    PROVISIONER_IDENTITY,
    SECRETS_MODES,
    SERVER_IDENTITIES,
)
from generator.spec.model import (Broker, Client, Device, DevicePki, Ota, PkiOptions, Publish, Spec, Status, Subscribe,
                                  Wifi)
from generator.spec.resolve import resolve_spec
from generator.spec.schema_check import schema_problems
from generator.spec.source import SpecSource, problems_to_error, read_spec_source

__all__ = [
    "ADMIN_IDENTITY", "AUTH_MODES", "BACKEND_IDENTITY", "Client", "DOCTOR_IDENTITY", "KEY_ORIGINS", "KEY_TYPES",
    "OTA_IDENTITY", "PROVISIONER_IDENTITY", "SECRETS_MODES", "SERVER_IDENTITIES", "Broker", "Device", "DevicePki",
    "Ota", "PkiOptions", "Publish", "Spec", "SpecSource", "Status", "Subscribe", "Wifi", "load_spec",
    "load_spec_source",
]


def load_spec_source(path: Path, environ: dict[str, str] | None = None, *,
                     without_secrets: bool = False) -> tuple[Spec, SpecSource]:
    source = read_spec_source(Path(path), environ, without_secrets=without_secrets)
    problems = schema_problems(source)
    if problems:
        raise problems_to_error(source, problems)
    spec, problems = resolve_spec(source)
    if problems:
        raise problems_to_error(source, problems)
    assert spec is not None
    return spec, source


def load_spec(path: Path, environ: dict[str, str] | None = None, *, without_secrets: bool = False) -> Spec:
    """Reads, validates and resolves a spec. Raises UserError (exit 2) naming file:line:column for any problem.
    `without_secrets`: secrets.yaml is not read; `!secret` values are a placeholder (see SECRET_PLACEHOLDER)."""
    return load_spec_source(path, environ, without_secrets=without_secrets)[0]
