"""What a spec's PKI hands to the renderers: every identity's credentials (certs, keys, passwords, the trust to
verify the broker), issued where missing and reused otherwise. A broker certificate from elsewhere (broker.ca_file,
cert_file, key_file; generator.pki.broker_trust) replaces the PKI's broker cert and root."""

from __future__ import annotations

from generator.pki.broker_trust import broker_trust
from generator.pki.credentials import BrokerCredentials, ClientCredentials, SpecCredentials
from generator.pki.spec_identities import ensure_spec_identities
from generator.spec.contract import BACKEND_IDENTITY, PROVISIONER_IDENTITY
from generator.spec.model import Spec
from generator.spec.provisioning_protocol import bootstrap_username


def spec_credentials(spec: Spec) -> SpecCredentials:
    """Issues what is missing in the spec's PKI and reuses everything else. A broker certificate from elsewhere
    (broker.ca_file, cert_file, key_file; generator.pki.broker_trust) replaces the PKI's broker cert and root."""
    trust = broker_trust(spec)           # checked before anything is issued
    identities = ensure_spec_identities(spec)
    device_trust = trust.ca_pem if trust else identities.ca_pem
    broker_cert: bytes | None
    broker_key: bytes | None
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
        bootstrap_passwords=tuple(sorted((bootstrap_username(device_id), identities.bootstrap[device_id])
                                         for device_id in identities.bootstrap_open)),
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
            bootstrap_password=identities.bootstrap.get(device.id),
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
    provisioner = None
    if identities.provisioner is not None:
        provisioner = ClientCredentials(name=PROVISIONER_IDENTITY, ca_pem=device_trust,
                                        cert_pem=identities.provisioner.cert_pem,
                                        key_pem=identities.provisioner.key_pem, password=None,
                                        cert_serial=identities.provisioner.serial,
                                        cert_not_after=identities.provisioner.not_after)
    return SpecCredentials(broker=broker, devices=devices, backend=backend, provisioner=provisioner)
