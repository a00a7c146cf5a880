"""broker.engine: rabbitmq against a real 3-node RabbitMQ cluster on 127.0.0.1 (one cluster for the module, about
30 s to start): login by certificate, the refused password override, per-device topic rules, revocation of a live
session by `gen broker apply`, and a device's failover when its node is killed (last: it kills a node)."""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as paho
import pytest

from conftest import client_tls_context
from generator.broker.rabbitmq_runner import RABBITMQ_BIN, running_cluster
from generator.pki.spec_credentials import spec_credentials
from generator.spec import load_spec

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "projects" / "examples" / "rabbitmq-cluster"
WAIT_S = 15.0     # upper bound for something that should happen at once (three VMs share two cores)
REFUSED = ("Bad user name or password", "Not authorized")   # CONNACK 4 or 5

pytestmark = pytest.mark.skipif(not (RABBITMQ_BIN / "rabbitmq-server").is_file(),
                                reason="rabbitmq-server is not installed (scripts/setup installs it)")


def gen(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cluster") / "rabbitmq-cluster"
    shutil.copytree(EXAMPLE, directory)
    result = gen("generate", directory / "device.yaml")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def cluster(project):
    with running_cluster(project / "build" / "broker", nodes=3) as running:
        yield running


def identities(project: Path):
    return spec_credentials(load_spec(project / "device.yaml"))


class Device:
    """A paho client with a device's certificate; its connects, disconnects and messages queue up."""

    def __init__(self, project: Path, device_id: str, *, client_id: str | None = None, clean: bool = True):
        credentials = identities(project)
        client = credentials.backend if device_id == "backend" else credentials.devices[device_id]
        context = client_tls_context(client)
        self.mqtt = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or device_id,
                                protocol=paho.MQTTv311, clean_session=clean)
        self.mqtt.tls_set_context(context)
        self.events: "queue.Queue[str]" = queue.Queue()
        self.messages: "queue.Queue[tuple[str, bytes]]" = queue.Queue()
        self.mqtt.on_connect = lambda _c, _u, flags, reason, _p: self.events.put(
            f"{reason}{' session present' if flags.session_present else ''}")
        self.mqtt.on_disconnect = lambda _c, _u, _f, reason, _p: self.events.put(f"disconnected: {reason}")
        self.mqtt.on_message = lambda _c, _u, message: self.messages.put((message.topic, message.payload))

    def connect(self, port: int) -> str:
        self.mqtt.connect("127.0.0.1", port, keepalive=30)
        self.mqtt.loop_start()
        return self.events.get(timeout=WAIT_S)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@contextlib.contextmanager
def device(project: Path, device_id: str, port: int, **options) -> Iterator[Device]:
    client = Device(project, device_id, **options)
    try:
        assert client.connect(port) == "Success"
        yield client
    finally:
        client.close()


def subscribed(client: Device, topic_filter: str, qos: int = 1) -> None:
    done: "queue.Queue[object]" = queue.Queue()
    client.mqtt.on_subscribe = lambda _c, _u, _mid, codes, _p: done.put(codes)
    client.mqtt.subscribe(topic_filter, qos)
    codes = done.get(timeout=WAIT_S)
    assert not any(code.is_failure for code in codes), codes


def test_a_device_logs_in_by_its_certificate_and_its_messages_reach_the_backend_on_another_node(project, cluster):
    with device(project, "backend", cluster.ports[2]) as backend, \
            device(project, "truck-01", cluster.ports[0]) as truck:
        subscribed(backend, "fleet/#")
        truck.mqtt.publish("fleet/truck-01/telemetry", b"21.5", qos=1).wait_for_publish(WAIT_S)
        assert backend.messages.get(timeout=WAIT_S) == ("fleet/truck-01/telemetry", b"21.5")


def test_a_password_sent_with_a_device_certificate_is_refused_instead_of_logging_in_as_another(project, cluster):
    client = Device(project, "truck-01")
    client.mqtt.username_pw_set("truck-02", "anything")
    try:
        assert client.connect(cluster.ports[0]) in REFUSED
    finally:
        client.close()
    client = Device(project, "truck-01")
    client.mqtt.username_pw_set("backend", "")
    try:
        assert client.connect(cluster.ports[1]) in REFUSED
    finally:
        client.close()


def test_a_device_can_neither_publish_to_nor_subscribe_to_another_devices_topics(project, cluster):
    with device(project, "backend", cluster.ports[1]) as backend:
        subscribed(backend, "fleet/#")
        with device(project, "truck-01", cluster.ports[0]) as truck:
            truck.mqtt.publish("fleet/truck-02/telemetry", b"forged", qos=1)
            assert truck.events.get(timeout=WAIT_S).startswith("disconnected")     # RabbitMQ closes it
        with device(project, "truck-01", cluster.ports[0]) as truck:
            truck.mqtt.subscribe("fleet/truck-02/cmd", 1)
            assert truck.events.get(timeout=WAIT_S).startswith("disconnected")
        with device(project, "truck-02", cluster.ports[2]) as other:
            other.mqtt.publish("fleet/truck-02/telemetry", b"own", qos=1).wait_for_publish(WAIT_S)
        assert backend.messages.get(timeout=WAIT_S) == ("fleet/truck-02/telemetry", b"own")   # not "forged"


def test_gen_doctor_proves_every_step_against_a_cluster_node_with_a_certificate_login(project, cluster):
    # A username in CONNECT would replace the certificate's name, a denied probe topic would close the probe:
    # the doctor sends no login with its certificate and probes only topics its identity may use.
    for port in (cluster.ports[0], cluster.ports[1]):
        result = gen("doctor", project / "device.yaml", "--device", "truck-04", "--broker", f"127.0.0.1:{port}",
                     "--json")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["ok"], report["steps"]
        assert {"mqtt-connect", "acl"} <= {step["step"] for step in report["steps"] if step["ok"]}


def test_gen_broker_apply_ends_the_live_session_of_a_revoked_device_and_the_crl_keeps_it_out(project, cluster):
    record = project / "build" / "run" / "broker-cluster-up.json"
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps(cluster.to_json()))
    with device(project, "truck-05", cluster.ports[1]) as truck:
        truck.mqtt.reconnect_delay_set(1, 1)
        revoked = gen("pki", "revoke", project / "device.yaml", "truck-05")
        assert revoked.returncode == 0, revoked.stderr
        spec = project / "device.yaml"
        spec.write_text(spec.read_text().replace("  - id: truck-05\n", ""))   # a revoked device leaves the spec
        applied = gen("broker", "apply", project / "device.yaml")
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "deleted user truck-05: its live sessions ended" in applied.stdout
        assert truck.events.get(timeout=WAIT_S).startswith("disconnected")
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:           # it retries every second: never gets back in
            with contextlib.suppress(queue.Empty):
                assert truck.events.get(timeout=0.5) != "Success"


def test_a_device_whose_node_is_killed_reconnects_to_the_next_node_with_its_session_and_queued_command(
        project, cluster):
    commands = "fleet/truck-03/cmd"
    truck = Device(project, "truck-03", clean=False)
    try:
        assert truck.connect(cluster.ports[2]) == "Success"
        subscribed(truck, commands)
        cluster.kill(3)                                   # kill -9 of the node it is on
        assert truck.events.get(timeout=WAIT_S).startswith("disconnected")
        with device(project, "backend", cluster.ports[0]) as backend:
            backend.mqtt.publish(commands, b"open-door", qos=1).wait_for_publish(WAIT_S)
        truck.mqtt.loop_stop()
        truck.mqtt.connect("127.0.0.1", cluster.ports[0], keepalive=30)   # the next node in its list
        truck.mqtt.loop_start()
        assert truck.events.get(timeout=WAIT_S) == "Success session present"
        assert truck.messages.get(timeout=WAIT_S) == (commands, b"open-door")
    finally:
        truck.close()
