"""What gen doctor's probes may send to the broker's engine. RabbitMQ (broker.engine: rabbitmq) differs from
Mosquitto in two ways the probes must respect (../shared/reference/rabbitmq-cluster.md §5):

- a username or password in CONNECT replaces the certificate's name (and gen's certificate users have no password):
  with a certificate login the doctor sends neither;
- a denied SUBSCRIBE or PUBLISH closes the connection: a probe subscribes only to what the generated topic rules
  (generator.broker.rabbitmq_render's definitions, from the ACL) let its identity read. A device reads only its
  subscribe filters; gen doctor's own identity reads every device topic.
"""

from __future__ import annotations

from generator.core.topics import filter_matches
from generator.pki.credentials import ClientCredentials
from generator.spec.contract import DOCTOR_IDENTITY
from generator.spec.model import Device


def doctor_login(device: Device, credentials: ClientCredentials) -> tuple[str | None, str | None]:
    """(username, password) for gen doctor's own identity: on RabbitMQ with a certificate, none (the CN is the name)."""
    if device.broker.clustered and credentials.cert_pem:
        return None, None
    return DOCTOR_IDENTITY, credentials.password


def device_may_subscribe(device: Device, topic: str) -> bool:
    """Whether the device's probe client may subscribe to `topic` without the broker closing it: always on Mosquitto
    (a denied SUBSCRIBE only gets a failure code), on RabbitMQ only within the device's subscribe filters."""
    return not device.broker.clustered or any(filter_matches(s.filter, topic) for s in device.subscribe)
