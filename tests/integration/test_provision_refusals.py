"""What the provisioning service and the broker refuse, one scenario per test, against the real Mosquitto and the
real service (the code `gen provision serve` runs). The hostile side speaks the wire protocol itself (paho, over
the real bootstrap listener with a device's real bootstrap password, or with a device's own certificate), because a
well-behaved firmware never sends these. Each test asserts what the sender observes (the refusal and its reason on
its response topic, or nothing delivered) and that the PKI's index records no new certificate."""

from __future__ import annotations

import queue
import re
import secrets
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import Received
from generator.pki.spec_identities import open_spec_pki
from generator.spec.provisioning_protocol import (
    REQUEST_MAX_BYTES,
    Request,
    Response,
    parse_response,
    render_request,
    request_topic,
    response_topic,
)
from generator.spec import load_spec
from provision_support import LIFECYCLE_WAIT_S, ProvisionWorld

pytestmark = pytest.mark.slow
DEVICES = ("dev-a", "dev-b")
NO_REQUEST_ID = "0" * 32          # what a refusal of a request too broken to name its id carries


@pytest.fixture
def world(tmp_path) -> ProvisionWorld:
    return ProvisionWorld.create(tmp_path, "arduino-mtls", device_ids=DEVICES)


def csr_pem(key, common_name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_request(device_id: str, csr: bytes, *, request_id: str | None = None, reason: str = "first-boot") -> Request:
    return Request("csr", device_id, request_id or secrets.token_hex(16), reason=reason, csr_pem=csr)


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ask(session, device_id: str, payload: bytes, request_id: str, *, channel: str = "bootstrap") -> Response:
    """Publishes `payload` on the device's request topic and returns the service's answer to `request_id`. Every
    message the session receives meanwhile is kept in `heard(session)`."""
    answers = response_topic(device_id, channel)
    session.subscribe(answers)
    session.publish(request_topic(device_id, channel), payload)
    deadline = time.monotonic() + LIFECYCLE_WAIT_S
    while time.monotonic() < deadline:
        try:
            message: Received = session.messages.get(timeout=0.5)
        except queue.Empty:
            continue
        session.heard = [*getattr(session, "heard", []), message]
        if message.topic == answers and message.payload:
            response = parse_response(message.payload)
            if response.request_id == request_id:
                return response
    raise AssertionError(f"no answer to request {request_id} on {answers}")


def heard(session) -> list[Received]:
    """What a session received: the messages `ask` went through, then those still queued."""
    kept = getattr(session, "heard", [])
    while not session.messages.empty():
        kept.append(session.messages.get_nowait())
    session.heard = kept
    return kept


def assert_refused(response: Response, reason: str) -> None:
    assert response.type == "refused", response
    assert re.search(reason, response.reason), response.reason


def refused_lines(world: ProvisionWorld) -> list[str]:
    return [line for line in world.log if "decision=refused" in line]


# ---------------------------------------------------------------------------------------------- the CSR


def test_a_csr_for_another_devices_id_is_refused_and_nothing_is_issued(world):
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as attacker:
        request = csr_request("dev-a", csr_pem(p256(), "dev-b"))
        answer = ask(attacker, "dev-a", render_request(request), request.request_id)
    assert_refused(answer, r"CSR is for 'dev-b', not 'dev-a'")
    assert world.device_serials() == []


def test_a_request_naming_another_devices_id_on_its_own_topic_is_refused_and_nothing_is_issued(world):
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as attacker:
        request = csr_request("dev-b", csr_pem(p256(), "dev-b"))
        answer = ask(attacker, "dev-a", render_request(request), NO_REQUEST_ID)
    assert_refused(answer, r"request names id 'dev-b' on the topic of 'dev-a'")
    assert world.device_serials() == []


def test_a_csr_for_an_id_not_in_the_spec_is_refused_even_while_the_broker_still_lets_it_log_in(tmp_path):
    # The operator took ghost-01 out of the spec; the broker still runs the config that lets it log in. A request
    # sent while the service was away waits in the service's session; the service refuses it and closes the login.
    stale = ProvisionWorld.create(tmp_path, "arduino-mtls", device_ids=(*DEVICES, "ghost-01"))
    with stale.broker() as broker:
        stale.start_service()                         # its persistent session: what it missed is kept for it
        stale.stop_service()
        current = stale.spec.path.read_text().replace("  - id: ghost-01\n", "")
        stale.spec.path.write_text(current)
        stale.spec = load_spec(stale.spec.path)
        with stale.bootstrap_session("ghost-01") as attacker:
            request = csr_request("ghost-01", csr_pem(p256(), "ghost-01"))
            attacker.publish(request_topic("ghost-01", "bootstrap"), render_request(request))
            stale.start_service()
            line = stale.wait_for_log(r"provision id=ghost-01 .*decision=refused")
            stale.wait_for_log(r"provision broker: wrote .*bootstrap\.passwd")
        assert 'reason="unknown device id \'ghost-01\' (not in the spec)"' in line
        with pytest.raises(AssertionError, match=r"refused \(disconnected: Not authorized|refused \(Not auth"):
            with stale.bootstrap_session("ghost-01"):
                pass
        stale.stop_service()
        assert "ghost-01@bootstrap" in broker.log_text()
    assert stale.device_serials() == []


def test_an_rsa_1024_key_is_refused_and_nothing_is_issued(world):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as attacker:
        request = csr_request("dev-a", csr_pem(weak, "dev-a"))
        answer = ask(attacker, "dev-a", render_request(request), request.request_id)
    assert_refused(answer, r"^not an EC P-256 key \(RSA 1024\)$")
    assert world.device_serials() == []


def test_a_csr_with_a_bad_signature_is_refused_and_nothing_is_issued(world):
    pem = csr_pem(p256(), "dev-a")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01                                   # the last byte of the signature's s: still well-formed DER
    forged = x509.load_der_x509_csr(bytes(der))
    assert not forged.is_signature_valid
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as attacker:
        request = csr_request("dev-a", forged.public_bytes(serialization.Encoding.PEM))
        answer = ask(attacker, "dev-a", render_request(request), request.request_id)
    assert_refused(answer, r"^bad CSR signature$")
    assert world.device_serials() == []


# ---------------------------------------------------------------------------------------------- sizes


def test_a_1_mb_request_is_dropped_by_the_broker_before_the_service_sees_it(world):
    with world.broker() as broker, world.service():
        with world.bootstrap_session("dev-a") as attacker:
            info = attacker.client.publish(request_topic("dev-a", "bootstrap"), b"x" * 1_000_000, qos=1)
            assert attacker.connacks.get(timeout=LIFECYCLE_WAIT_S).startswith("disconnected")
            assert not info.is_published()
        lines_before = len(world.log)
        with world.bootstrap_session("dev-a") as sender:          # a sentinel after it, on a new connection
            answer = ask(sender, "dev-a", b"not a request", NO_REQUEST_ID)
        broker_log = broker.log_text()
    assert_refused(answer, r"^malformed request")
    assert not any("too large" in line for line in world.log), world.log
    assert [line for line in world.log[lines_before:] if "id=dev-a" in line] == [refused_lines(world)[-1]]
    assert "Client dev-a@bootstrap disconnected due to oversize packet." in broker_log, broker_log[-2000:]
    assert world.device_serials() == []


def test_a_request_over_2048_bytes_is_refused_by_the_service_and_nothing_is_issued(world):
    request = csr_request("dev-a", csr_pem(p256(), "dev-a"))
    payload = render_request(request) + b"\n" * (3000 - len(render_request(request)))
    assert len(payload) == 3000 > REQUEST_MAX_BYTES
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as attacker:
        answer = ask(attacker, "dev-a", payload, NO_REQUEST_ID)
    assert_refused(answer, rf"^request too large \(3000 bytes; at most {REQUEST_MAX_BYTES}\)$")
    assert world.device_serials() == []


# ---------------------------------------------------------------------------------------------- replay


def test_a_replayed_request_gets_the_same_certificate_before_confirmation_and_a_refusal_after(world):
    key = p256()
    request = csr_request("dev-a", csr_pem(key, "dev-a"))
    payload = render_request(request)
    with world.broker(), world.service():
        with world.bootstrap_session("dev-a") as device:
            first = ask(device, "dev-a", payload, request.request_id)
            assert first.type == "cert", first
            again = ask(device, "dev-a", payload, request.request_id)   # the same bytes, once more
        assert again.type == "cert" and again.serial == first.serial     # sent again, not issued again
        assert len(world.device_serials()) == 1
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        with world.identity_session("dev-a", cert_pem=first.chain_pem, key_pem=key_pem) as device:
            confirm = Request("confirm", "dev-a", secrets.token_hex(16), serial=first.serial)
            confirmed = ask(device, "dev-a", render_request(confirm), confirm.request_id, channel="operational")
            assert confirmed.type == "confirmed", confirmed
            replayed = ask(device, "dev-a", payload, request.request_id, channel="operational")
    assert_refused(replayed, r"^key already used")
    (entry,) = [e for e in world.entries("dev-a")]
    assert f"{entry.serial:X}" == first.serial and entry.status == "valid" and entry.confirmed_at is not None
    assert world.device_serials() == [entry.serial]


# ---------------------------------------------------------------------------------------------- the ACL


def test_a_bootstrap_login_cannot_publish_anywhere_but_its_own_request_topic(world):
    other = csr_request("dev-b", csr_pem(p256(), "dev-b"))
    forged_answer = b"gen-provision 1\ntype rotate\nid dev-b\nrequest " + b"1" * 32 + b"\n\n"
    elsewhere = {
        request_topic("dev-b", "bootstrap"): render_request(other),       # another device's first boot
        request_topic("dev-a", "operational"): render_request(other),     # the channel of a device with a cert
        response_topic("dev-b", "bootstrap"): forged_answer,              # answers in the service's name
        response_topic("dev-a", "operational"): forged_answer,
        "devices/dev-a/telemetry": b"21.5",                              # the application's topics
        "devices/dev-a/status": b"online",
    }
    with world.broker(), world.service(), world.identity_session("backend") as backend, \
            world.bootstrap_session("dev-b") as victim:
        backend.subscribe("devices/#")
        victim.subscribe(response_topic("dev-b", "bootstrap"))
        with world.bootstrap_session("dev-a") as attacker:
            for topic, payload in elsewhere.items():
                attacker.publish(topic, payload)        # MQTT 3.1.1: a denied publish still gets its PUBACK
            sentinel = ask(attacker, "dev-a", b"sentinel", NO_REQUEST_ID)   # after everything above
        backend.publish("devices/sentinel", b"end")
        backend_saw = backend.receive_until("devices/sentinel")
        time.sleep(0.5)                               # anything still in flight to the victim arrives
        victim_saw = heard(victim)
    assert_refused(sentinel, r"^malformed request")
    assert [m.topic for m in backend_saw] == ["devices/sentinel"], backend_saw
    assert victim_saw == [], victim_saw
    service_heard = [line for line in world.log if line.startswith("provision id=")]
    assert service_heard == [refused_lines(world)[-1]] and "id=dev-a channel=bootstrap" in service_heard[0]
    assert world.device_serials() == []


def test_a_bootstrap_login_subscribed_to_everything_receives_only_its_own_answers(world):
    with world.broker(), world.service(), world.identity_session("backend") as backend, \
            world.bootstrap_session("dev-b") as other:
        with world.bootstrap_session("dev-a") as attacker:
            for topic_filter in ("#", "gen/#", "devices/#", response_topic("dev-b", "bootstrap"),
                                 request_topic("dev-b", "bootstrap")):
                attacker.subscribe(topic_filter)      # Mosquitto 2.0 grants it; delivery is what the ACL checks
            backend.publish("devices/dev-a/cmd/reboot", b"now")
            backend.publish("devices/dev-b/status", b"online", retain=True)
            theirs = csr_request("dev-b", csr_pem(p256(), "dev-b"))
            issued = ask(other, "dev-b", render_request(theirs), theirs.request_id)   # dev-b's own first boot
            assert issued.type == "cert"
            own = ask(attacker, "dev-a", b"sentinel", NO_REQUEST_ID)
            time.sleep(0.5)                           # anything still in flight to the attacker arrives
            attacker_heard = heard(attacker)
    assert_refused(own, r"^malformed request")
    assert [m.topic for m in attacker_heard] == [response_topic("dev-a", "bootstrap")], attacker_heard
    assert b"id dev-a\n" in attacker_heard[0].payload
    assert [e.id for e in open_spec_pki(world.spec, create=False).entries() if e.role == "device"] == ["dev-b"]
