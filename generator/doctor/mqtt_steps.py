"""Steps 6-7 of `gen doctor`: the broker accepts the device's MQTT CONNECT, and its ACL lets the device publish and
receive on its topics (round trips with the doctor's own identity). A device that says it is online is not probed as
itself. Network I/O in `run_*`, every diagnosis a pure `judge_*`."""

from __future__ import annotations

import secrets as random_tokens
from dataclasses import dataclass

from generator.core.mqtt_wire import ConnectionClosed, Message, MqttSession
from generator.core.topics import filter_matches
from generator.doctor import probes
from generator.doctor.engine_rules import device_may_subscribe, doctor_login
from generator.doctor.material import DoctorMaterial, DoctorTarget, probe_identity
from generator.doctor.results import StepResult, failed, passed
from generator.pki.credentials import ClientCredentials
from generator.spec.contract import DOCTOR_IDENTITY
from generator.spec.model import Device

PROBE_PAYLOAD = b"gen doctor probe "


CONNACK_MEANINGS = {
    0: "connection accepted",
    1: "the broker refuses MQTT 3.1.1 (unacceptable protocol version)",
    2: "the broker rejects the client id (identifier rejected)",
    3: "the broker is up but the MQTT service is unavailable (server unavailable)",
    4: "bad user name or password",
    5: "not authorized",
}


def _mqtt_login(device: Device, credentials: ClientCredentials) -> tuple[str | None, str | None]:
    """(username, password) as the firmware sends them: with mtls alone the cert CN is the username."""
    if device.uses_password:
        return device.username, credentials.password
    return None, None


def run_mqtt_connect_step(target: DoctorTarget, material: DoctorMaterial) -> StepResult:
    credentials = material.device_credentials()
    username, password = _mqtt_login(target.device, credentials)
    try:
        with probes.open_tls(target.address, target.server_name, probe_identity(credentials)) as sock:
            session = MqttSession(sock)
            code = session.connect(target.probe_client_id, username=username, password=password)
            if code == 0:
                session.disconnect()
    except (ConnectionClosed, OSError) as error:
        return judge_connack(target, None, str(error) or type(error).__name__)
    return judge_connack(target, code, None)


def judge_connack(target: DoctorTarget, code: int | None, closed: str | None) -> StepResult:
    device = target.device
    who = f"client id {target.probe_client_id}" + (f", user {device.username}" if device.uses_password else
                                                  f", user = cert CN {device.id}")
    if code is None:
        hint = ("the broker refused the client cert after the handshake (TLS 1.3 shows it only now)"
                if "certificate" in (closed or "").lower() or "alert" in (closed or "").lower() else
                "the broker closed the connection before answering CONNECT")
        return failed("mqtt-connect", f"no CONNACK: {hint}",
                      "read the broker's log for this client (`disconnected` / `OpenSSL Error` lines)", closed or "")
    if code == 0:
        return passed("mqtt-connect", f"CONNACK 0, connection accepted ({who})")
    meaning = CONNACK_MEANINGS.get(code, f"unknown return code {code}")
    install_passwd = (f"run `gen generate SPEC`, install OUT/broker/passwd and reload the broker, so it holds the "
                      f"password in pki/private/passwords/{device.username}.txt "
                      "(reflash a device that has an older one)")
    if device.uses_password and code in (4, 5):
        meaning += " (Mosquitto 2.0 says this for a wrong password or an unknown user)" if code == 5 else ""
        fix = install_passwd
    elif code == 5:
        meaning += " (the broker did not take the cert CN as the user name, and refuses anonymous clients)"
        fix = ("install OUT/broker/mosquitto.conf: an mtls listener needs `use_identity_as_username true`; "
               "then restart the broker")
    elif code == 4:
        fix = "the broker expects a password this device does not send: install OUT/broker/mosquitto.conf"
    else:
        fix = {1: "the broker is too old for MQTT 3.1.1; use Mosquitto 1.4 or later",
               2: "allow the client id: check `clientid_prefixes` / `allow_zero_length_clientid` in mosquitto.conf",
               3: "the broker is overloaded or shutting down; read its log and retry",
               }.get(code, "read the broker's log")
    return failed("mqtt-connect", f"CONNACK {code}: {meaning} ({who})", fix)


def concrete_topic(topic_filter: str) -> str:
    """A topic a subscription to `topic_filter` receives: each '+' and a trailing '#' become `doctor`."""
    topic = "/".join("doctor" if level in ("+", "#") else level for level in topic_filter.split("/"))
    assert filter_matches(topic_filter, topic)
    return topic


def device_publish_topics(device: Device) -> tuple[str, ...]:
    """Every topic the device publishes to: its publish topics and its status topic."""
    return tuple(dict.fromkeys([*(p.topic for p in device.publish), device.status.topic]))


@dataclass(frozen=True)
class RoundTrip:
    direction: str                   # "publish" (device -> doctor) or "receive" (doctor -> device)
    topic: str                       # the concrete topic used
    topic_filter: str                # the spec's topic or filter
    delivered: bool
    sender_echo: bool | None = None  # when not delivered: did the sender's own probe client get it back?


def run_presence_probe(target: DoctorTarget, material: DoctorMaterial) -> bytes | None:
    """The device's retained status as the doctor's own identity reads it; None when there is none or the doctor
    cannot log in (then the device steps probe as usual and say what is wrong)."""
    topic = target.device.status.topic
    credentials = material.doctor_credentials()
    try:
        with probes.open_tls(target.address, target.server_name, probe_identity(credentials)) as sock:
            session = MqttSession(sock)
            username, password = doctor_login(target.device, credentials)
            if session.connect(f"{DOCTOR_IDENTITY}-presence", username=username, password=password) != 0:
                return None
            session.subscribe([(topic, 0)])
            session.ping()   # the retained message is sent after the SUBACK and before the PINGRESP
            session.disconnect()
    except (ConnectionClosed, OSError):
        return None
    retained = [m.payload for m in session.received if m.topic == topic and m.retain]
    return retained[-1] if retained else None


def judge_presence(target: DoctorTarget, retained_status: bytes | None) -> list[StepResult]:
    """When the device says it is online, its own connection proves CONNECT, and its birth message came through
    the ACL; probing as it would disconnect it. Otherwise nothing (the probes run)."""
    device = target.device
    if retained_status != device.status.online.encode():
        return []
    online = device.status.online
    return [
        passed("mqtt-connect", f"device {device.id} is connected right now (its retained {device.status.topic} is "
                               f"{online!r}): its own connection proves CONNECT. Not probed as {device.id}, which "
                               "would disconnect it (the broker binds the client id to the user name)"),
        passed("acl", f"device {device.id}'s {online!r} on {device.status.topic} reached the doctor through the "
                      "ACL; its other topics are not probed while it is connected (--take-over probes them, "
                      "disconnecting it once)"),
    ]


def run_acl_step(target: DoctorTarget, material: DoctorMaterial) -> StepResult:
    device = target.device
    device_credentials, doctor_credentials = material.device_credentials(), material.doctor_credentials()
    username, password = _mqtt_login(device, device_credentials)
    nonce = random_tokens.token_hex(6)
    trips: list[RoundTrip] = []
    try:
        with probes.open_tls(target.address, target.server_name, probe_identity(device_credentials)) as device_sock, \
                probes.open_tls(target.address, target.server_name, probe_identity(doctor_credentials)) as doctor_sock:
            device_session, doctor_session = MqttSession(device_sock), MqttSession(doctor_sock)
            code = device_session.connect(target.probe_client_id, username=username, password=password)
            if code != 0:
                return judge_connack(target, code, None)
            doctor_username, doctor_password = doctor_login(device, doctor_credentials)
            code = doctor_session.connect(f"{DOCTOR_IDENTITY}-{nonce}", username=doctor_username,
                                          password=doctor_password)
            if code != 0:
                return failed("acl", f"the doctor's identity {DOCTOR_IDENTITY} cannot log in to prove the round trip: "
                                     f"CONNACK {code}, "
                                     f"{CONNACK_MEANINGS.get(code, 'unknown code')}",
                              "install OUT/broker/ (passwd, acl, ca.pem) from `gen generate SPEC` "
                              "and reload the broker")
            for topic in device_publish_topics(device):
                trips.append(_round_trip("publish", topic, topic, device_session, doctor_session, nonce,
                                         echo=device_may_subscribe(device, topic)))
            for subscription in device.subscribe:
                topic = concrete_topic(subscription.filter)
                trips.append(_round_trip("receive", topic, subscription.filter, doctor_session, device_session,
                                         nonce, receiver_filter=subscription.filter))
            device_session.disconnect()
            doctor_session.disconnect()
    except (ConnectionClosed, OSError) as error:
        return failed("acl", f"the broker closed a probe connection during the round trip: {error}",
                      "read the broker's log for clients ending in -doctor")
    return judge_acl(target, trips)


def _round_trip(direction: str, topic: str, topic_filter: str, sender: MqttSession, receiver: MqttSession,
                nonce: str, *, receiver_filter: str | None = None, echo: bool = True) -> RoundTrip:
    """`sender` publishes a non-retained QoS 1 probe on `topic`; `receiver`, subscribed first, must get it.
    After the PUBACK the broker has routed the message, so the receiver's PINGRESP comes after it (a barrier,
    not a timer). `echo` False: the sender may not subscribe to `topic` (RabbitMQ would close it), so no echo."""
    payload = PROBE_PAYLOAD + f"{nonce} {direction} {topic}".encode()
    receiver.subscribe([(receiver_filter or topic, 1)])
    if echo:
        sender.subscribe([(topic, 1)])           # the echo tells a denied publish from a denied delivery
    receiver.ping()
    sender.ping()
    sender.publish(topic, payload, qos=1)
    delivered = _await_probe(receiver, topic, payload)
    echoed = _await_probe(sender, topic, payload) if not delivered and echo else None
    return RoundTrip(direction, topic, topic_filter, delivered, echoed)


def _await_probe(session: MqttSession, topic: str, payload: bytes, barriers: int = 2) -> bool:
    def seen(message: Message) -> bool:
        return message.topic == topic and message.payload == payload

    for _ in range(barriers):
        session.ping()
        if any(seen(m) for m in session.received):
            session.received[:] = [m for m in session.received if not seen(m)]
            return True
    return False


def judge_acl(target: DoctorTarget, trips: list[RoundTrip]) -> StepResult:
    device = target.device
    for trip in trips:
        if trip.delivered:
            continue
        if trip.direction == "publish":
            if trip.sender_echo:
                summary = (f"the broker drops what the device publishes on {trip.topic} before the doctor gets it: "
                           f"the ACL denies user {DOCTOR_IDENTITY} read on {trip.topic}")
                fix = f"give user {DOCTOR_IDENTITY} `topic readwrite` on {trip.topic} in the ACL (OUT/broker/acl)"
            else:
                summary = (f"the ACL denies device {device.id} publishing on {trip.topic} "
                           f"(Mosquitto drops it silently; with `log_type debug` its log says `Denied PUBLISH`)")
                fix = (f"give user {device.username} `topic write {trip.topic}` in the ACL: install OUT/broker/acl "
                       f"from `gen generate SPEC` and reload the broker")
            return failed("acl", summary, fix)
        if trip.sender_echo:
            summary = (f"the device does not receive messages on {trip.topic_filter} (probe topic {trip.topic}): "
                       f"the ACL denies user {device.username} read")
            fix = (f"give user {device.username} `topic read {trip.topic_filter}` in the ACL: install OUT/broker/acl "
                   f"from `gen generate SPEC` and reload the broker")
        else:
            summary = (f"the doctor cannot publish on {trip.topic} to prove the device's subscription "
                       f"{trip.topic_filter}: the ACL denies user {DOCTOR_IDENTITY}")
            fix = f"give user {DOCTOR_IDENTITY} `topic readwrite` on {trip.topic} in the ACL (OUT/broker/acl)"
        return failed("acl", summary, fix)
    published = [t.topic for t in trips if t.direction == "publish"]
    received = [t.topic_filter for t in trips if t.direction == "receive"]
    details = [f"device -> doctor: {t}" for t in published] + [f"doctor -> device: {f}" for f in received]
    return passed("acl", f"round trips through the broker: the device published on {len(published)} topic(s) and "
                         f"received on {len(received)} filter(s); nothing retained", *details)
