"""`gen simulate --broker HOST:PORT` routes the bootstrap port too, so devices that make their own key reach the
provisioning listener instead of looping on "could not resolve" (issue 26, item 6)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from conftest import EXAMPLES_DIR
from generator.output.layout import BROKER_UP_RECORD
from generator.simulate.device_runs import BrokerAddress, device_environment, parse_broker_address
from generator.simulate.bootstrap_route import with_bootstrap_port
from generator.spec import load_spec


def device_key_spec(tmp_path: Path):
    project = tmp_path / "device-key"
    shutil.copytree(EXAMPLES_DIR / "arduino-device-key", project, ignore=shutil.ignore_patterns("pki", "build"))
    return load_spec(project / "device.yaml")


def test_a_given_broker_routes_the_device_bootstrap_port_to_the_same_host_at_the_specs_provision_port(tmp_path):
    spec = device_key_spec(tmp_path)
    address = with_bootstrap_port(spec, tmp_path / "out", parse_broker_address("127.0.0.1:18883"))
    routes = dict(device_environment(spec.devices[0], address=address, nvs_image=None))["GEN_SIM_CONNECT_TO"]
    assert f"mqtt.example.com:{spec.broker.provision_port}:127.0.0.1:{spec.broker.provision_port}" in routes.split(",")


def test_a_given_broker_that_gen_broker_up_runs_uses_the_bootstrap_port_its_record_names(tmp_path):
    spec = device_key_spec(tmp_path)
    out = tmp_path / "out"
    (out / BROKER_UP_RECORD).parent.mkdir(parents=True)
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    (out / BROKER_UP_RECORD).write_text(json.dumps({
        "gen_pid": os.getpid(), "pid_file": str(pid_file), "private_dir": str(tmp_path), "log_path": "log",
        "host": "127.0.0.1", "port": 18883, "plaintext_port": None, "provision_port": 40001,
        "bind_address": "127.0.0.1", "ends_sessions": True}))
    address = with_bootstrap_port(spec, out, BrokerAddress("127.0.0.1", 18883))
    assert address.provision_port == 40001


def test_gen_broker_up_prints_its_bootstrap_port_for_devices_that_make_their_own_key(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import find_free_port

    project = tmp_path / "device-key"
    shutil.copytree(EXAMPLES_DIR / "arduino-device-key", project, ignore=shutil.ignore_patterns("pki", "build"))
    port, bootstrap = find_free_port(), find_free_port()
    spec = project / "device.yaml"
    spec.write_text(spec.read_text().replace("  port: 8883\n", f"  port: 8883\n  provision_port: {bootstrap}\n"))
    process = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(spec), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert f"port {port} (TLS)" in first and f"port {bootstrap} (bootstrap" in first, first
