"""`gen provision serve`'s limits and its revocations against the real Mosquitto and the real service, speaking
the wire protocol as a thief of a bootstrap secret would (one scenario per test): a session on a certificate the
service supersedes ends, a fourth certificate without a confirmation waits for an operator, a device that floods
its request topic neither delays another's certificate nor fills the log."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization

from generator.provision.policy import MAX_UNCONFIRMED_ISSUES
from generator.spec.provisioning_protocol import Request, Response, render_request, request_topic
from generator.provision.service import LOG_LINES_PER_WINDOW
from provision_support import LIFECYCLE_WAIT_S, ProvisionWorld
from test_provision_refusals import ask, csr_pem, csr_request, p256

pytestmark = pytest.mark.slow
DEVICES = ("dev-a", "dev-b")
FAIR_BOUND_S = 10.0       # another device's certificate under a flood: before, a flood held it back for 40 s
FLOOD_PER_S = 1000        # 50 times the service's whole rate (the issue's flood); a flood faster than the service
                          # reads its MQTT connection delays everyone (README: what is not built)


@pytest.fixture
def world(tmp_path) -> ProvisionWorld:
    return ProvisionWorld.create(tmp_path, "arduino-mtls", device_ids=DEVICES)


def certificate(session, device_id: str, key=None) -> Response:
    """Asks for a certificate for a fresh key (or `key`), waiting out `busy` answers; returns the final answer."""
    key = key or p256()
    while True:
        request_id = secrets.token_hex(16)
        answer = ask(session, device_id, render_request(csr_request(device_id, csr_pem(key, device_id),
                                                                    request_id=request_id)), request_id)
        if answer.type != "busy":
            return answer
        time.sleep(answer.retry_after or 1)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_a_session_on_a_certificate_the_service_supersedes_is_ended(world):
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as thief:
        stolen_key = p256()
        first = certificate(thief, "dev-a", stolen_key)
        assert first.type == "cert"
        with world.identity_session("dev-a", cert_pem=first.chain_pem, key_pem=key_pem(stolen_key)) as session:
            assert certificate(thief, "dev-a").type == "cert"       # the next request supersedes the first
            event = session.connacks.get(timeout=LIFECYCLE_WAIT_S)  # type: ignore[attr-defined]
            assert event.startswith("disconnected"), event
        world.wait_for_log(r"provision ended the live sessions of dev-a")


def test_a_certificate_beyond_the_unconfirmed_cap_is_refused_until_gen_provision_allow(world):
    with world.broker(), world.service(), world.bootstrap_session("dev-a") as thief:
        for _ in range(MAX_UNCONFIRMED_ISSUES):
            assert certificate(thief, "dev-a").type == "cert"
        issued = world.device_serials()
        refused = certificate(thief, "dev-a")
        assert refused.type == "refused" and "gen provision allow" in refused.reason, refused
        assert world.device_serials() == issued
        allowed = subprocess.run([sys.executable, "-m", "generator", "provision", "allow", str(world.spec.path),
                                  "--device", "dev-a"], capture_output=True, text=True, timeout=60)
        assert allowed.returncode == 0, allowed.stderr
        assert f"got {MAX_UNCONFIRMED_ISSUES} certificates it never confirmed" in allowed.stdout
        assert certificate(thief, "dev-a").type == "cert"


def flood(world: ProvisionWorld, stop: threading.Event) -> None:
    """dev-a's bootstrap login sends confirmations as fast as paho can, until `stop`."""
    with world.bootstrap_session("dev-a") as flooder:
        payload = render_request(Request("confirm", "dev-a", secrets.token_hex(16), serial="1"))
        topic = request_topic("dev-a", "bootstrap")
        sent, started = 0, time.monotonic()
        while not stop.is_set():                   # evenly spread: every token the service gets back is taken
            flooder.client.publish(topic, payload, qos=0)
            sent += 1
            time.sleep(max(0.0, started + sent / FLOOD_PER_S - time.monotonic()))


def test_a_device_flooding_its_request_topic_does_not_hold_up_another_devices_certificate(world):
    with world.broker(), world.service(), world.bootstrap_session("dev-b") as device:
        stop = threading.Event()
        flooder = threading.Thread(target=flood, args=(world, stop), daemon=True)
        flooder.start()
        try:
            time.sleep(2.0)                                         # the flood is on
            request_id = secrets.token_hex(16)
            started = time.monotonic()
            answer = ask(device, "dev-b", render_request(csr_request("dev-b", csr_pem(p256(), "dev-b"),
                                                                     request_id=request_id)), request_id)
            waited = time.monotonic() - started
        finally:
            stop.set()
            flooder.join(timeout=LIFECYCLE_WAIT_S)
        assert answer.type == "cert", answer                       # not "busy": the flood used its own share
        assert waited < FAIR_BOUND_S, f"dev-b waited {waited:.1f} s"


def test_a_flood_of_refused_requests_writes_a_bounded_log(world):
    with world.broker(), world.service():
        stop = threading.Event()
        flooder = threading.Thread(target=flood, args=(world, stop), daemon=True)
        flooder.start()
        time.sleep(5.0)
        stop.set()
        flooder.join(timeout=LIFECYCLE_WAIT_S)
        time.sleep(1.0)
    lines = [line for line in world.log if "id=dev-a" in line]
    assert len(lines) <= 3 * LOG_LINES_PER_WINDOW, "\n".join(lines[:20])   # refused, busy, dropped: a few each
    assert sum(len(line) for line in world.log) < 20_000
