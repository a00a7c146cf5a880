"""The PKI of a spec: opened where the spec says (pki.dir, the passphrase variable), and everything `gen generate`
needs from it for that spec, issued if missing and reused otherwise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from generator.pki.ca import CaPassphrase
from generator.pki.issuing import Identity, utcnow
from generator.pki.store import PkiStore
from generator.spec.contract import BACKEND_IDENTITY, DOCTOR_IDENTITY, PROVISIONER_IDENTITY


@dataclass(frozen=True)
class SpecIdentities:
    """Everything `gen generate` needs from the PKI for one spec."""

    ca_pem: bytes                       # root CA: devices embed it to verify the broker
    broker_cafile_pem: bytes            # issuing CA + root: the broker's cafile
    crl_pem: bytes                      # the broker's crlfile
    broker: Identity | None             # None when the broker's cert comes from elsewhere (spec broker.cert_file,
                                        # broker.external)
    backend: Identity                   # client cert for the backend (it also gets a password)
    doctor: Identity                    # gen doctor's own client cert (and password): never the backend's
    devices: Mapping[str, Identity]     # device id -> identity, for devices whose auth includes "mtls" and whose
                                        # key gen makes (a device that makes its own has none here)
    passwords: Mapping[str, str] = field(repr=False)  # username -> password: devices whose auth includes
                                                      # "password", the backend and the doctor
    provisioner: Identity | None = None  # `gen provision serve`'s client cert, when a device makes its own key
    bootstrap: Mapping[str, str] = field(default_factory=dict, repr=False)  # device id -> first-boot password, for
                                                      # every device that makes its own key
    bootstrap_open: tuple[str, ...] = ()  # ids whose bootstrap login the broker accepts (no identity yet)


def open_spec_pki(spec: Any, *, create: bool = True, clock: Callable[[], dt.datetime] = utcnow) -> PkiStore:
    """The PKI a spec names (spec.pki.dir). With pki.ca_passphrase_env, the CA keys are encrypted with the passphrase
    in that variable, which is read only when a CA key must be decrypted (to sign) or encrypted."""
    env = getattr(spec.pki, "ca_passphrase_env", None)
    passphrase = CaPassphrase(variable=env) if env else None
    return PkiStore.open(Path(spec.pki.dir), project=spec.project, key_type=spec.pki.key_type,
                         ca_validity_days=getattr(spec.pki, "ca_validity_days", 3650), passphrase=passphrase,
                         create=create, clock=clock)


def ensure_spec_identities(spec: Any, *, clock: Callable[[], dt.datetime] = utcnow) -> SpecIdentities:
    """The broker identity, one identity per device that uses a client cert, the backend client, the passwords
    the auth modes need (keyed by MQTT username), and a fresh-enough CRL. What `gen generate` calls; it reuses
    everything that already exists and writes the index once."""
    store = open_spec_pki(spec, clock=clock)
    with store.batch():
        broker = (store.ensure_broker(spec.broker.names, validity_days=spec.pki.validity_days)
                  if spec.broker.issues_cert else None)
        devices: dict[str, Identity] = {}
        by_profile: dict[tuple[str, int], list[str]] = {}
        for device in spec.devices:
            if device.uses_client_cert and not device.makes_own_key:
                by_profile.setdefault((device.pki.key_type, device.pki.validity_days), []).append(device.id)
        for (key_type, validity_days), ids in by_profile.items():
            for identity in store.ensure_devices(ids, key_type=key_type, validity_days=validity_days):
                devices[identity.name] = identity
        devices = {device.id: devices[device.id] for device in spec.devices if device.id in devices}  # spec order
        servers = {name: store.ensure_client(name, key_type=spec.pki.key_type, validity_days=spec.pki.validity_days)
                   for name in spec.server_identities}     # with ota:, gen's OTA publisher too
        passwords = {device.username: store.password(device.username)
                     for device in spec.devices if device.uses_password}
        passwords.update({name: store.password(name) for name in spec.server_identities})
        provisioner = (store.ensure_client(PROVISIONER_IDENTITY, key_type=spec.pki.key_type,
                                           validity_days=spec.pki.validity_days) if spec.provisions_devices else None)
        bootstrap = {device.id: store.bootstrap_secret(device.id) for device in spec.devices if device.makes_own_key}
        crl = store.crl_pem()
    waiting = tuple(device_id for device_id in bootstrap if store.standing(device_id).bootstrap_open)
    return SpecIdentities(ca_pem=store.device_trust_pem(), broker_cafile_pem=store.broker_cafile_pem(),
                          crl_pem=crl, broker=broker, backend=servers[BACKEND_IDENTITY],
                          doctor=servers[DOCTOR_IDENTITY], devices=devices, passwords=passwords,
                          provisioner=provisioner, bootstrap=bootstrap, bootstrap_open=waiting)

