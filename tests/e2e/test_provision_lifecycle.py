"""The whole life of a device that makes its own key, both flavours, the real firmware on the host runtime against
the real broker and the real provisioning service: first boot over the bootstrap listener, rotation by command and
by expiry (the broker and the device with their clock set forward), a broker restart and a service restart in the
middle of each, and kill -9 of the device at every step of a rotation. After each, the device is connected as
itself with exactly one valid certificate, and the key it made is nowhere but in its own flash."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from generator.broker.render import BOOTSTRAP_PASSWORD_FILE, CERT_FILE, KEY_FILE
from generator.pki import profiles
from generator.pki.spec_identities import open_spec_pki
from generator.spec.provisioning_protocol import Response, render_response, response_topic
from generator.simulate.run import SimulateOptions, simulate
from generator.spec import PROVISIONER_IDENTITY, load_spec
from provision_support import CONNECTED_AS_ITSELF, LIFECYCLE_WAIT_S, STEP, ProvisionWorld
from simulate_support import EXAMPLES_DIR

pytestmark = pytest.mark.slow
FLAVOURS = ["arduino-mtls", "espidf-mtls"]
_PRIVATE_KEY = re.compile(rb"-----BEGIN EC PRIVATE KEY-----[^-]+-----END EC PRIVATE KEY-----")


@pytest.fixture(params=FLAVOURS)
def world(request, tmp_path) -> ProvisionWorld:
    return ProvisionWorld.create(tmp_path, request.param)


def device_keys(world: ProvisionWorld) -> set[bytes]:
    """The private keys the simulated device holds in its flash (its NVS journal)."""
    keys: set[bytes] = set()
    for journal in (world.flash_root / world.device_id).glob("*.journal"):
        keys.update(_PRIVATE_KEY.findall(journal.read_bytes()))
    return keys


def assert_key_only_on_the_device(world: ProvisionWorld) -> None:
    keys = device_keys(world)
    assert keys, "the device holds no key"
    for root in (world.out_dir, world.spec.pki.dir / "private"):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(key in data for key in keys), f"{path} holds the key the device made"


def serial_of(line: str) -> str:
    return re.search(r"certificate ([0-9A-F]+)", line).group(1)


def test_first_boot_makes_a_key_on_the_device_gets_a_certificate_and_connects_as_itself(world):
    with world.broker() as broker, world.service():
        with world.device() as device:
            device.wait_for(r"\[cred\] no identity yet: first boot over the bootstrap listener")
            device.wait_for(r"\[cred\] connected to mqtt\.example\.com:8884 with the bootstrap login")
            device.wait_for(STEP.format(1), timeout=LIFECYCLE_WAIT_S)
            stored = device.wait_for(STEP.format(3) + r" certificate ([0-9A-F]+)", timeout=LIFECYCLE_WAIT_S)
            device.wait_for(CONNECTED_AS_ITSELF)
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
            world.wait_for_log(r"provision broker: wrote .*bootstrap\.passwd")
            assert (broker.private_dir / BOOTSTRAP_PASSWORD_FILE).read_bytes() == b""   # its login is closed
    live = world.assert_one_identity()
    assert f"{live.serial:X}" == stored.group(1) and live.via == "bootstrap"
    assert_key_only_on_the_device(world)
    # The broker reloads (SIGHUP) kept the service's session, and stopping it is not a lost broker.
    assert not any("lost the broker" in line for line in world.log), world.log


def test_once_provisioned_the_bootstrap_login_is_refused_by_the_broker(world):
    with world.broker() as broker, world.service():
        with world.device() as device:
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
        world.wait_for_log(r"provision broker: wrote .*bootstrap\.passwd")
        password = open_spec_pki(world.spec, create=False).bootstrap_secret(world.device_id)
        result = subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.provision_port), "--insecure",
             "--cafile", str(world.out_dir / "devices" / world.device_id / "ca.pem"),
             "-u", f"{world.device_id}@bootstrap", "-P", password, "-V", "mqttv311",
             "-t", f"gen/bootstrap/{world.device_id}/req", "-m", "x", "-q", "1"],
            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "not authorised" in (result.stderr + result.stdout).lower(), result


REQUEST_SENT = r"\[mqtt\] published \d+ bytes to gen/\w+/[\w-]+/req"


def test_a_first_boot_survives_a_service_restart_and_a_broker_restart_in_the_middle(world):
    with world.broker() as broker:
        world.start_service()
        with world.device() as device:
            device.wait_for(STEP.format(2), timeout=LIFECYCLE_WAIT_S)
            device.wait_for(REQUEST_SENT)
            device.pause()                            # the answer waits in its socket ...
            world.wait_for_log(r"decision=issued")
            world.stop_service()                      # ... while the service that signed it goes away
            device.resume()
            device.wait_for(STEP.format(4), timeout=LIFECYCLE_WAIT_S)
            device.wait_for(r"\[cred\] confirming certificate")   # nobody hears it
            broker.restart()                          # and the broker goes down and up meanwhile
            device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
            world.start_service()                     # back: its index says what is open, and it says it again
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
            world.stop_service()
    assert world.log.count("provision republished 1 open answer(s)") >= 1
    world.assert_one_identity()


def provisioned(world: ProvisionWorld) -> None:
    """First boot, done: the device has its identity (run inside world.broker())."""
    with world.service(), world.device() as device:
        device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)


def test_a_rotation_by_command_gives_a_fresh_key_and_revokes_the_old_certificate_after_the_new_one_connects(world):
    with world.broker() as broker:
        provisioned(world)
        first = world.assert_one_identity()
        keys_before = device_keys(world)
        subprocess.run([sys.executable, "-m", "generator", "pki", "rotate", str(world.spec.path), "--device",
                        world.device_id], check=True, capture_output=True, timeout=60)
        world.start_service()
        with world.device() as device:
            device.wait_for(r"\[cred\] the operator asked for a rotation", timeout=LIFECYCLE_WAIT_S)
            device.wait_for(STEP.format(2))
            device.wait_for(REQUEST_SENT)
            device.pause()
            world.wait_for_log(r"decision=issued")
            broker.restart()                          # the answer is lost with it: the device asks again
            device.resume()
            device.wait_for(STEP.format(3), timeout=LIFECYCLE_WAIT_S)
            device.pause()
            world.stop_service()                      # the new cert connects while the service is away
            device.resume()
            device.wait_for(STEP.format(4), timeout=LIFECYCLE_WAIT_S)
            assert world.entries()[0].status == "valid"   # not revoked before the device has switched for good
            world.start_service()
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
            world.stop_service()
        with world.device() as device:                # its flash, as it reads it at boot: the old key is erased
            device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
    second = world.assert_one_identity()
    assert second.serial != first.serial and second.key_sha256 != first.key_sha256
    assert {e.serial: e.reason for e in world.entries()}[first.serial] == "superseded"
    assert len(device_keys(world)) == 1 and not keys_before & device_keys(world)   # a fresh key, the old one gone
    assert_key_only_on_the_device(world)


def test_a_rotation_by_expiry_happens_with_a_synchronised_clock_inside_the_renewal_window(world):
    with world.broker():
        provisioned(world)
    first = world.assert_one_identity()
    world.days_ahead = 2.2                           # validity 3 days, renewed 1 day before: due
    with world.broker() as broker:
        world.start_service()
        with world.device() as device:
            due = device.wait_for(r"\[cred\] certificate [0-9A-F]+ is due for renewal \(renews from "
                                  r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)", timeout=LIFECYCLE_WAIT_S)
            device.wait_for(STEP.format(2))
            device.wait_for(REQUEST_SENT)
            device.pause()
            world.wait_for_log(r"decision=issued .*reason=expiry")
            world.stop_service()                      # the service and the broker both restart before the device
            broker.restart()                          # has the answer: the service republishes it from its index
            device.resume()                           # (the answer may still have reached it: either way)
            device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
            world.start_service()
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
            world.stop_service()
    second = world.assert_one_identity()
    assert second.serial != first.serial
    assert any(re.search(STEP.format(3), line) for line in device.lines)
    # The log says when, as a date: renew_before_days (1) before the old expiry, less a jitter of up to a tenth.
    renews_from = dt.datetime.strptime(due[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    slack = dt.timedelta(seconds=2)
    assert first.not_after - dt.timedelta(days=1.1) - slack <= renews_from <= first.not_after - dt.timedelta(days=1) + slack


def test_a_rotate_command_right_behind_another_answer_is_not_lost(world):
    # The broker hands a device its retained answer on subscribe and a new one right behind it: esp-mqtt's task
    # must wait for the main task to take the first rather than drop the second.
    with world.broker():
        provisioned(world)
        live = world.assert_one_identity()
        with world.device() as device:
            device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
            device.wait_for(rf"\[mqtt\] received \d+ bytes on gen/prov/{world.device_id}/resp")   # the retained one
            with world.identity_session(PROVISIONER_IDENTITY) as provisioner:
                answers = response_topic(world.device_id, "operational")
                confirmed = Response("confirmed", world.device_id, "1" * 32, serial=f"{live.serial:X}")
                rotate = Response("rotate", world.device_id, "2" * 32)
                first = provisioner.client.publish(answers, render_response(confirmed), qos=1)
                second = provisioner.client.publish(answers, render_response(rotate), qos=1, retain=True)
                first.wait_for_publish(LIFECYCLE_WAIT_S)
                second.wait_for_publish(LIFECYCLE_WAIT_S)
            device.wait_for(r"\[cred\] the operator asked for a rotation", timeout=LIFECYCLE_WAIT_S)
            device.wait_for(STEP.format(1))


def test_a_rotation_renews_the_trust_anchors_so_the_device_follows_the_broker_to_a_new_ca(world):
    # A new CA is added before the old one retires: the devices must trust both before the broker moves. The
    # firmware in the field trusts only the old root; the next rotation brings the bundle, and the device keeps it.
    with world.broker() as broker:
        provisioned(world)
        now = dt.datetime.now(dt.timezone.utc)
        new_key = profiles.generate_key("ec-p256")
        new_root = profiles.CertificateAuthority(profiles.build_root_ca(new_key, project="greenhouse-next", validity_days=30,
                                                              now=now), new_key)
        old_root = open_spec_pki(world.spec, create=False).device_trust_pem()
        bundle = world.spec.path.parent / "trust.pem"
        bundle.write_bytes(old_root + new_root.cert.public_bytes(serialization.Encoding.PEM))
        world.spec.path.write_text(world.spec.path.read_text().replace(
            "\nbroker:\n", "\nbroker:\n  ca_file: trust.pem\n", 1))
        world.spec = load_spec(world.spec.path)  # the service's view; the devices' images are not rebuilt
        open_spec_pki(world.spec, create=False).request_rotation(world.device_id)
        with world.service(), world.device() as device:
            device.wait_for(STEP.format(3) + r" certificate [0-9A-F]+ stored in slot \d with new trust anchors",
                            timeout=LIFECYCLE_WAIT_S)
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
        assert any("trust=renewed" in line for line in world.log)
        # The old CA retires: the broker now serves a certificate from the new one only.
        server_key = profiles.generate_key("ec-p256")
        server = profiles.issue_broker_cert(server_key.public_key(), world.spec.broker.names, issuer=new_root,
                                       validity_days=30, now=now, project="greenhouse-next")
        (broker.private_dir / CERT_FILE).write_bytes(server.public_bytes(serialization.Encoding.PEM))
        (broker.private_dir / KEY_FILE).write_bytes(profiles.private_key_pem(server_key))
        broker.restart()
        with world.device() as device:
            device.wait_for(r"\[cred\] trust anchors from slot \d \(sent by the provisioning service\)")
            device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
    world.assert_one_identity()


BOOT_STATE = r"\[cred\] (rotation in progress: .*|identity: slot \d, certificate [0-9A-F]+.*)"
# What the device finds in its flash at boot after a power loss right after each step (later, if the kill came
# after the next step had already run: the device does not wait for the test).
STATES = ("key made, no certificate", "certificate stored, untried", "switched, unconfirmed", "one identity")
STATE_AFTER_STEP = {1: 0, 2: 0, 3: 1, 4: 2, 5: 3}


def boot_state(line: str) -> str:
    if "waits for its certificate" in line:
        return STATES[0]
    if "trying the certificate" in line:
        return STATES[1]
    if "not confirmed yet" in line:
        return STATES[2]
    return STATES[3]


def wait_for_rotation(world: ProvisionWorld, old_serial: int) -> None:
    """Until the index holds one valid identity again, not `old_serial`, and nothing pending."""
    deadline = time.monotonic() + LIFECYCLE_WAIT_S
    while True:
        try:
            assert world.assert_one_identity().serial != old_serial
            assert not any(entry.status == "pending" for entry in world.entries())
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_kill_9_at_every_step_of_a_rotation_leaves_a_device_that_connects_with_one_valid_identity(world):
    booted_in: dict[int, str] = {}
    with world.broker(), world.service():
        with world.device() as device:
            device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
        for step in (1, 2, 3, 4, 5):               # one rotation per step, killed right after that step's write
            old_serial = world.assert_one_identity().serial
            open_spec_pki(world.spec, create=False).request_rotation(world.device_id)
            with world.device() as device:
                device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
                device.wait_for(STEP.format(step), timeout=LIFECYCLE_WAIT_S)
                device.kill()
            with world.device() as device:         # power back: it connects, and the rotation ends well
                booted_in[step] = boot_state(device.wait_for(BOOT_STATE).group(1))
                device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
                wait_for_rotation(world, old_serial)
                if STATES.index(booted_in[step]) < STATES.index("one identity"):
                    device.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)   # the device heard it too
    for step, state in booted_in.items():
        assert STATES.index(state) >= STATE_AFTER_STEP[step], booted_in
    assert len(world.entries()) == 6, world.entries()          # one certificate per rotation, none twice
    with world.broker(), world.device() as device:             # and it boots into that identity
        final_line = device.wait_for(r"\[cred\] identity: slot \d, certificate ([0-9A-F]+)")
        device.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
    assert f"{world.assert_one_identity().serial:X}" == final_line.group(1)


@pytest.mark.parametrize("example", ["arduino-device-key", "espidf-device-key"])
def test_the_example_provisions_itself_in_its_first_simulation_and_keeps_its_identity_in_the_next(example, tmp_path):
    """The README's path: `gen simulate` of the example as it is, the service beside the broker, nothing else."""
    project = tmp_path / example
    shutil.copytree(EXAMPLES_DIR / example, project)
    spec = load_spec(project / "device.yaml")
    options = SimulateOptions(duration=8, out_dir=project / "build", flash_root=tmp_path / "flash")
    first: list[str] = []
    result = simulate(spec, options, on_line=lambda _device, line: first.append(line))
    assert result.ok, "\n".join(first)
    assert any(re.search(r"\[cred\] no identity yet: first boot", line) for line in first)
    (serial,) = {match[1] for match in map(re.compile(STEP.format(5) + r" certificate ([0-9A-F]+)").search, first)
                 if match}
    (confirmed,) = [entry for entry in open_spec_pki(spec).entries() if entry.id == spec.devices[0].id]
    assert (confirmed.status, confirmed.serial) == ("valid", int(serial, 16)) and confirmed.confirmed_at is not None
    again: list[str] = []
    assert simulate(spec, options, on_line=lambda _device, line: again.append(line)).ok
    assert any(f"identity: slot 0, certificate {serial}" in line for line in again), "\n".join(again)
    assert not any("first boot" in line for line in again), "\n".join(again)
