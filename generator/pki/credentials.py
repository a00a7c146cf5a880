"""What the PKI hands to the renderers: the credentials each end of the link needs, as plain values.

`generator.output.generate` builds these from the PKI store; the broker and firmware renderers read only these, so they
stay pure functions of (spec, credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ClientCredentials:
    """One MQTT client identity: a device, or the backend."""

    name: str                      # device id or "backend"; also the MQTT username
    ca_pem: bytes                  # what the client trusts to verify the broker (NUL-free PEM text)
    cert_pem: bytes | None         # client certificate (leaf) when the auth mode uses one
    key_pem: bytes | None          # its private key (PEM) when the auth mode uses one
    password: str | None           # MQTT password when the auth mode uses one
    cert_serial: int | None = None
    cert_not_after: datetime | None = None
    bootstrap_password: str | None = None  # a device that makes its own key: its first-boot login (<id>@bootstrap)


@dataclass(frozen=True)
class BrokerCredentials:
    cafile_pem: bytes              # Mosquitto `cafile`: verifies client certificates (devices send only their leaf)
    cert_pem: bytes | None         # Mosquitto `certfile`: broker leaf + chain (None: a broker gen does not run)
    key_pem: bytes | None          # Mosquitto `keyfile`
    crl_pem: bytes                 # Mosquitto `crlfile`: current CRL of the issuing CA
    passwords: tuple[tuple[str, str], ...]  # (username, password) pairs for the password file, sorted by username
    salt_key: bytes = b""          # a secret of the installation the password salts derive from (broker.password_salt)
    bootstrap_passwords: tuple[tuple[str, str], ...] = ()  # (<id>@bootstrap, password) of devices still waiting for
                                                          # their first identity: the bootstrap listener's password file


@dataclass(frozen=True)
class SpecCredentials:
    broker: BrokerCredentials
    devices: dict[str, ClientCredentials]   # by device id
    backend: ClientCredentials
    provisioner: ClientCredentials | None = None   # `gen provision serve` (when a device makes its own key)
