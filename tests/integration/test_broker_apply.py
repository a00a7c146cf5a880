"""`gen broker apply` against the real Mosquitto: the regenerated files go into the running broker, and every live
session of an identity that was revoked, renewed with a new key or removed ends within seconds (a SIGHUP alone
leaves a TLS session up for ever). One scenario per test; the broker is the one `gen broker up` runs, found from
the spec alone, or one named by --broker-dir and its pid file."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (
    LOOPBACK,
    WAIT_S,
    client_tls_context,
    mqtt_session,
    paho_client,
    tls_connect,
)
from generator.pki.spec_identities import open_spec_pki

ENDED_WITHIN_S = 5.0       # the session must be gone this soon after gen broker apply returns (it ends it itself)
QUIET_S = 3.0              # a refused client retries every second: this long without getting back in


def gen(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@contextlib.contextmanager
def gen_broker_up(spec: Path, port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(spec), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    try:
        first = process.stdout.readline()
        assert f"port {port} (TLS)" in first, first + process.stderr.read()
        second = process.stdout.readline()
        assert "pid file" in second and "gen broker apply" in second, second
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=WAIT_S)


@contextlib.contextmanager
def live_session(port: int, client) -> Iterator["queue.Queue[str]"]:
    """A device connected as `client`, reconnecting every second; its connects and disconnects queue up."""
    mqtt, events = paho_client(client, client_tls_context(client))
    mqtt.reconnect_delay_set(1, 1)
    mqtt.connect(LOOPBACK, port, keepalive=30)
    mqtt.loop_start()
    try:
        assert events.get(timeout=WAIT_S) == "Success"
        yield events
    finally:
        mqtt.disconnect()
        mqtt.loop_stop()


def assert_ended_and_kept_out(events: "queue.Queue[str]") -> None:
    first = events.get(timeout=ENDED_WITHIN_S)
    assert first.startswith("disconnected"), first
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            assert events.get(timeout=0.2) != "Success", "the client got back in"


def test_a_connected_device_whose_certificate_is_revoked_is_cut_off_by_gen_broker_apply(
        broker_project, copy_project, free_port):
    project = copy_project(broker_project("mtls"))
    stolen = project.client("sensor-a")                  # the certificate and key on the stolen board
    port = free_port()
    with gen_broker_up(project.spec.path, port), live_session(port, stolen) as events:
        for step in (("pki", "revoke", project.spec.path, "sensor-a", "--reason", "key-compromise"),
                     ("pki", "renew", project.spec.path, "sensor-a", "--new-key")):
            assert gen(*step).returncode == 0
        applied = gen("broker", "apply", project.spec.path)
        assert applied.returncode == 0, applied.stderr
        assert "ended the live session of sensor-a (revoked)" in applied.stdout
        assert_ended_and_kept_out(events)
        with pytest.raises(ssl.SSLError):
            tls_connect(type("B", (), {"host": LOOPBACK, "port": port})(), client_tls_context(stolen)).recv(1)


def test_an_identity_renewed_with_a_new_key_loses_the_session_of_its_old_key(broker_project, copy_project,
                                                                             free_port):
    project = copy_project(broker_project("mtls"))
    old = project.client("sensor-b")
    port = free_port()
    with gen_broker_up(project.spec.path, port), live_session(port, old) as events:
        assert gen("pki", "renew", project.spec.path, "sensor-b", "--new-key").returncode == 0
        applied = gen("broker", "apply", project.spec.path)
        assert applied.returncode == 0, applied.stderr
        assert "ended the live session of sensor-b (new key)" in applied.stdout
        assert events.get(timeout=ENDED_WITHIN_S).startswith("disconnected")
        renewed = project.regenerate().client("sensor-b")
        with mqtt_session(type("B", (), {"host": LOOPBACK, "port": port, "log_text": lambda self: ""})(), renewed):
            pass                                          # the new key connects


def test_a_device_removed_from_the_spec_loses_its_session(broker_project, copy_project, free_port):
    project = copy_project(broker_project("mtls"))
    port = free_port()
    with gen_broker_up(project.spec.path, port), live_session(port, project.client("sensor-b")) as events:
        text = project.spec.path.read_text()
        project.spec.path.write_text(text.replace("  - id: sensor-b\n", ""))
        applied = gen("broker", "apply", project.spec.path)
        assert applied.returncode == 0, applied.stderr
        assert "ended the live session of sensor-b (removed)" in applied.stdout
        assert events.get(timeout=ENDED_WITHIN_S).startswith("disconnected")


def test_a_session_that_keeps_its_rights_is_left_alone(broker_project, copy_project, free_port):
    project = copy_project(broker_project("mtls"))
    port = free_port()
    with gen_broker_up(project.spec.path, port), live_session(port, project.client("sensor-b")) as events:
        assert gen("pki", "revoke", project.spec.path, "sensor-a").returncode == 0
        assert gen("pki", "renew", project.spec.path, "sensor-a", "--new-key").returncode == 0
        applied = gen("broker", "apply", project.spec.path)
        assert applied.returncode == 0, applied.stderr
        with pytest.raises(queue.Empty):
            events.get(timeout=QUIET_S)


def test_gen_broker_apply_installs_into_a_broker_dir_and_reloads_it_through_its_pid_file(
        broker_project, copy_project, start_broker):
    project = copy_project(broker_project("mtls"))
    broker = start_broker(project.broker_dir)            # stands for an installed broker: its directory, its pid file
    with live_session(broker.port, project.client("sensor-a")) as events:
        store = open_spec_pki(project.spec, create=False)
        store.revoke("sensor-a", reason="key-compromise")
        store.renew("sensor-a", new_key=True)
        applied = gen("broker", "apply", project.spec.path, "--broker-dir", broker.private_dir,
                      "--broker-pid-file", broker.pid_file, "--broker", f"{LOOPBACK}:{broker.port}")
        assert applied.returncode == 0, applied.stderr
        assert "crl.pem" in applied.stdout and "reloaded the broker (SIGHUP pid" in applied.stdout
        assert_ended_and_kept_out(events)


def test_without_the_plugin_gen_broker_apply_ends_a_revoked_session_by_restarting_gen_broker_ups_broker(
        broker_project, copy_project, free_port):
    project = copy_project(broker_project("mtls"))
    stolen = project.client("sensor-a")
    port = free_port()
    with gen_broker_up(project.spec.path, port, env={"GEN_MOSQUITTO_DYNSEC_PLUGIN": ""}), \
            live_session(port, stolen) as events:
        assert gen("pki", "revoke", project.spec.path, "sensor-a").returncode == 0
        assert gen("pki", "renew", project.spec.path, "sensor-a", "--new-key").returncode == 0
        applied = gen("broker", "apply", project.spec.path)
        assert applied.returncode == 0, applied.stderr
        assert "restarted the broker, ending every session" in applied.stdout
        assert_ended_and_kept_out(events)
        with mqtt_session(type("B", (), {"host": LOOPBACK, "port": port, "log_text": lambda self: ""})(),
                          project.client("sensor-b")):
            pass                                          # the broker runs again, for everyone else


def test_gen_broker_apply_with_no_broker_running_says_how_to_name_one(broker_project, copy_project):
    project = copy_project(broker_project("mtls"))
    result = gen("broker", "apply", project.spec.path)
    assert result.returncode == 2
    assert "gen broker up" in result.stderr and "--broker-dir" in result.stderr and "Traceback" not in result.stderr


def test_a_password_login_removed_from_the_spec_is_ended_and_refused(broker_project, copy_project, start_broker):
    project = copy_project(broker_project("password"))
    broker = start_broker(project.broker_dir)
    with live_session(broker.port, project.client("sensor-b")) as events:
        text = project.spec.path.read_text()
        project.spec.path.write_text(text.replace("  - id: sensor-b\n", ""))
        applied = gen("broker", "apply", project.spec.path, "--broker-dir", broker.private_dir,
                      "--broker-pid-file", broker.pid_file, "--broker", f"{LOOPBACK}:{broker.port}")
        assert applied.returncode == 0, applied.stderr
        assert "ended the live session of sensor-b (removed)" in applied.stdout   # gen.admin logs in by password
        assert_ended_and_kept_out(events)
