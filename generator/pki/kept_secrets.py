"""Secrets gen generates and keeps in the PKI: MQTT passwords and first-boot (bootstrap) passwords, one line in a
0600 file in a 0700 folder, generated once and reused."""

from __future__ import annotations

import secrets
from pathlib import Path

from generator.core.files import ensure_dir, write_atomic
from generator.pki.layout import PRIVATE_DIR_MODE, SECRET_MODE, read_or_none
from generator.spec.contract import MQTT_PASSWORD_LENGTH


def read_secret(path: Path) -> str | None:
    """A generated secret (one line in a 0600 file), or None when there is none yet."""
    existing = read_or_none(path)
    value = existing.decode("utf-8", "replace").strip() if existing else ""
    return value or None


def kept_secret(path: Path) -> str:
    """The secret in `path`: the one generated before, else a new one (MQTT_PASSWORD_LENGTH URL-safe characters),
    written 0600 in a 0700 folder and kept."""
    value = read_secret(path)
    if value:
        return value
    value = secrets.token_urlsafe(MQTT_PASSWORD_LENGTH * 3 // 4)
    ensure_dir(path.parent, PRIVATE_DIR_MODE)
    write_atomic(path, value.encode() + b"\n", mode=SECRET_MODE, durable=True)
    return value
