"""broker.engine: rabbitmq against a real 3-node RabbitMQ cluster on 127.0.0.1 (one cluster for the module, about
30 s to start): login by certificate, the refused password override, per-device topic rules, revocation of a live
session by `gen broker apply` and of a session whose identity was renewed with a new key, OTA announcements
retained on every node (RabbitMQ keeps retained messages per node) and said when a node is out of reach, and a
device's failover when its node is killed (last: it kills a node)."""

from __future__ import annotations

import contextlib
import hashlib
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

from conftest import client_tls_context, find_free_port
from generator.broker.rabbitmq_runner import RABBITMQ_BIN, ClusterAccess, running_cluster
from generator.core.app_image import DROM_START, IROM_START, VERSION_RECORD_BEGIN, VERSION_RECORD_END, \
    VERSION_RECORD_TEXT, app_description, pack_app_image
from generator.output.layout import CLUSTER_UP_RECORD
from generator.pki.layout import PkiLayout
from generator.pki.ota_signing import sign_image, signing_key
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


def recorded(project: Path, cluster, **changes) -> None:
    """The record `gen broker up` writes while it runs this cluster (with `changes`), which apply and gen ota read."""
    record = project / "build" / CLUSTER_UP_RECORD
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps({**cluster.to_json(), **changes}))


def test_gen_broker_apply_ends_the_live_session_of_a_revoked_device_and_the_crl_keeps_it_out(project, cluster):
    recorded(project, cluster)
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


def test_gen_broker_apply_ends_the_live_session_of_a_device_renewed_with_a_new_key_and_lets_the_new_key_in(
        project, cluster):
    recorded(project, cluster)
    spec = project / "device.yaml"
    assert gen("broker", "apply", spec).returncode == 0            # the keys the cluster has now
    with device(project, "truck-04", cluster.ports[2]) as truck:   # its old certificate, which stays valid
        renewed = gen("pki", "renew", spec, "truck-04", "--new-key")
        assert renewed.returncode == 0, renewed.stderr
        assert gen("generate", spec).returncode == 0
        applied = gen("broker", "apply", spec)
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert truck.events.get(timeout=WAIT_S).startswith("disconnected")
        assert "ended the live sessions of truck-04 on every node (new key)" in applied.stdout
    with device(project, "truck-04", cluster.ports[0]) as truck:   # the new certificate, with its topic rules
        subscribed(truck, "fleet/truck-04/cmd")


@pytest.fixture(scope="module")
def with_ota(project, cluster) -> Path:
    """The project with `ota: {}` added, generated and applied to the running cluster (gen.ota and its rules)."""
    spec = project / "device.yaml"
    spec.write_text(spec.read_text().replace("\ndevices:\n", "\nota: {}\ndevices:\n"))
    assert gen("generate", spec).returncode == 0
    recorded(project, cluster)
    applied = gen("broker", "apply", spec)
    assert applied.returncode == 0, applied.stderr + applied.stdout
    return project


def ota_image(project: Path, version: str) -> Path:
    """An app image for the example's ESP32 (Arduino: with gen's version record), signed with the project's key."""
    record = VERSION_RECORD_BEGIN + version.encode().ljust(VERSION_RECORD_TEXT, b"\0") + VERSION_RECORD_END
    payload = record + b"firmware " * 500
    desc = app_description(version=version, project_name="firmware", idf_ver="v4.4.7",
                           elf_sha256=hashlib.sha256(payload).digest())
    unsigned, signed = project / f"{version}.unsigned.bin", project / f"{version}.bin"
    unsigned.write_bytes(pack_app_image("esp32", [(DROM_START["esp32"], desc), (IROM_START["esp32"], payload)]))
    sign_image(unsigned, signed, signing_key(PkiLayout(project / "pki")))
    return signed


def announced(project: Path, device_id: str, port: int) -> dict:
    """The announcement retained for the device on the node at `port`, as the device hears it when it subscribes."""
    with device(project, device_id, port) as client:
        subscribed(client, f"devices/{device_id}/ota")
        topic, payload = client.messages.get(timeout=WAIT_S)
    assert topic == f"devices/{device_id}/ota"
    return json.loads(payload)


def test_an_ota_announcement_of_gen_ota_publish_is_retained_on_every_node_of_the_cluster(with_ota, cluster):
    project = with_ota
    recorded(project, cluster)
    image = ota_image(project, "1.0.1")
    published = gen("ota", "publish", project / "device.yaml", "--device", "truck-06", "--image", image,
                    "--version", "1.0.1")
    assert published.returncode == 0, published.stderr + published.stdout
    assert "announced on 3 of 3 nodes" in published.stdout
    for port in cluster.ports:           # a device hears it on whichever node it lands
        assert announced(project, "truck-06", port)["version"] == "1.0.1"


def test_gen_ota_publish_names_the_node_it_cannot_reach_and_exits_1(with_ota, cluster):
    project = with_ota
    down = ["127.0.0.1", find_free_port()]    # nothing listens there: a node that is down
    recorded(project, cluster, mqtt_nodes=[["127.0.0.1", port] for port in cluster.ports[:2]] + [down])
    image = ota_image(project, "1.0.2")
    published = gen("ota", "publish", project / "device.yaml", "--device", "truck-02", "--image", image,
                    "--version", "1.0.2")
    assert published.returncode == 1, published.stderr + published.stdout
    assert "announced on 2 of 3 nodes" in published.stdout
    said = " ".join(published.stderr.split())
    assert f"not on local node 3 (127.0.0.1:{down[1]})" in said and "will not see it until this is run again" in said
    assert announced(project, "truck-02", cluster.ports[1])["version"] == "1.0.2"


def test_gen_ota_status_shows_a_device_as_its_current_node_holds_it(with_ota, cluster):
    project = with_ota
    recorded(project, cluster)
    with device(project, "truck-03", cluster.ports[0]) as truck:    # it was on node 1, and left it
        truck.mqtt.publish("fleet/truck-03/status", b"offline", qos=1, retain=True).wait_for_publish(WAIT_S)
    with device(project, "truck-03", cluster.ports[1]) as truck:    # now it is on node 2
        truck.mqtt.publish("fleet/truck-03/status", b"online", qos=1, retain=True).wait_for_publish(WAIT_S)
        truck.mqtt.publish("devices/truck-03/firmware", b'{"version":"1.0.0","slot":"ota_0","state":"running"}',
                           qos=1, retain=True).wait_for_publish(WAIT_S)
    shown = gen("ota", "status", project / "device.yaml")
    assert shown.returncode == 0, shown.stderr + shown.stdout
    (row,) = [line for line in shown.stdout.splitlines() if "truck-03" in line]
    assert "online" in row and "1.0.0" in row and "ota_0" in row
    assert "read from 3 of 3 nodes" in shown.stdout


def test_gen_broker_apply_deletes_the_persistent_session_of_a_device_removed_from_the_spec(project, cluster):
    recorded(project, cluster)
    access = ClusterAccess.read(project / "build" / CLUSTER_UP_RECORD, project / "build" / "broker")
    assert access is not None
    queue_path = "/api/queues/%2F/mqtt-subscription-truck-01qos1"
    truck = Device(project, "truck-01", clean=False)        # a persistent session, as devices keep on a cluster
    try:
        assert truck.connect(cluster.ports[1]) == "Success"
        subscribed(truck, "fleet/truck-01/cmd")
    finally:
        truck.close()
    assert access.api("GET", queue_path)[0] == 200          # its queue outlives the connection, collecting commands
    spec = project / "device.yaml"
    spec.write_text(spec.read_text().replace("  - id: truck-01\n", ""))
    assert gen("generate", spec).returncode == 0
    applied = gen("broker", "apply", spec)
    assert applied.returncode == 0, applied.stderr + applied.stdout
    assert "deleted user truck-01" in applied.stdout and "mqtt-subscription-truck-01qos1" in applied.stdout
    assert access.api("GET", queue_path)[0] == 404


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
