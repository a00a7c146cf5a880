"""`gen simulate --kill-node-after` on a RabbitMQ cluster (broker.engine: rabbitmq): real firmware on the host
runtime dials the first node by its name, the node is killed with kill -9 mid-run, and the device moves to the next
name of its MQTT_HOSTS, which the simulation routes to another node. One cluster start (about a minute)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES_DIR
from generator.broker.rabbitmq_runner import RABBITMQ_BIN
from generator.simulate.cluster import node_routes, routed_to_nodes
from generator.spec import load_spec

EXAMPLE = EXAMPLES_DIR / "rabbitmq-cluster"


def gen(*args, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def copied_example(tmp_path: Path) -> Path:
    directory = tmp_path / "rabbitmq-cluster"
    shutil.copytree(EXAMPLE, directory)
    return directory / "device.yaml"


def test_each_node_name_is_routed_to_its_own_node_port_ahead_of_the_other_routes(tmp_path):
    broker = load_spec(copied_example(tmp_path)).broker
    routes = node_routes(broker, [1001, 1002, 1003], "127.0.0.1")
    assert routes.split(",")[:3] == [f"mq{i}.example.com:{broker.port}:127.0.0.1:100{i}" for i in (1, 2, 3)]
    assert f"mq.example.com:{broker.port}:127.0.0.1:1001" in routes
    environment = routed_to_nodes((("GEN_SIM_CONNECT_TO", "ota.example.com:8070:127.0.0.1:8070"), ("X", "1")),
                                  routes)
    assert environment == (("GEN_SIM_CONNECT_TO", routes + ",ota.example.com:8070:127.0.0.1:8070"), ("X", "1"))


def test_kill_node_after_is_refused_for_a_mosquitto_broker_with_a_clear_error(tmp_path):
    spec = copied_example(tmp_path)
    text = spec.read_text().replace("  engine: rabbitmq\n", "").replace(
        "  nodes: [mq1.example.com, mq2.example.com, mq3.example.com]\n", "")
    spec.write_text(text)
    result = gen("simulate", spec, "--duration", "1", "--kill-node-after", "1", timeout=60)
    assert result.returncode == 2
    assert "--kill-node-after kills a node of a RabbitMQ cluster" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not (RABBITMQ_BIN / "rabbitmq-server").is_file(),
                    reason="rabbitmq-server is not installed (scripts/setup installs it)")
def test_simulated_devices_of_both_flavours_fail_over_when_their_node_is_killed_and_are_connected_at_the_end(
        tmp_path):
    spec = copied_example(tmp_path)     # truck-01: Arduino (PubSubClient); truck-02: ESP-IDF (esp-mqtt)
    spec.write_text(spec.read_text().replace("  - id: truck-02\n", "  - id: truck-02\n    target: esp32-espidf\n"))
    result = gen("simulate", spec, "--device", "truck-01", "--device", "truck-02", "--duration", "30",
                 "--kill-node-after", "12", "--out", tmp_path / "out")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    before, _, after = output.partition("killing node 1 (mq1.example.com")
    assert after, output[-4000:]
    table = after[after.index("simulated devices"):]
    for device_id in ("truck-01", "truck-02"):
        assert re.search(rf"{device_id} \| .*\[mqtt\] connected to mq1\.example\.com:\d+ as {device_id}", before)
        assert re.search(rf"{device_id} \| .*\[mqtt\] connection lost", after), output[-4000:]
        assert re.search(rf"{device_id} \| .*\[mqtt\] connected to mq[23]\.example\.com:\d+ as {device_id}", after)
        row = next(line for line in table.splitlines() if device_id in line)
        assert "yes" in row and re.search(r"mq[23]\.example\.com", row), table
