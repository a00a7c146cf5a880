"""The generated firmware, compiled for Linux, against the real generated Mosquitto on 127.0.0.1: for every example
spec (Arduino and ESP-IDF, each auth mode, and the NVS fleet) the device connects over TLS, announces itself, sends
telemetry the backend receives, answers a command, leaves its will when it dies, and comes back after the broker
restarts."""

from __future__ import annotations

import re

import pytest

from conftest import mqtt_session
from simulate_support import CONNECTED, EXAMPLES, SimDevice, reconnect_bound_s, send_command, simulated_project


@pytest.fixture(params=EXAMPLES)
def project(request, tmp_path_factory):
    return simulated_project(request.param, tmp_path_factory)


def topics(project):
    device = project.device()
    return {p.name: p.topic for p in device.publish} | {"status": device.status.topic} | {
        s.name: s.filter for s in device.subscribe}


def command_topic(project) -> str:
    """A topic the device's command filter matches."""
    command_filter = topics(project)["command"]
    return command_filter.removesuffix("/#") + "/blink" if command_filter.endswith("/#") else command_filter


def test_the_device_connects_over_tls_and_its_telemetry_and_birth_reach_the_backend(project, start_broker):
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.credentials.backend) as backend:
        backend.subscribe(topics(project)["telemetry"])
        backend.subscribe(topics(project)["status"])
        with SimDevice.start(project.run_for(device_id, broker)) as device:
            device.wait_for(CONNECTED + rf"mqtt\.example\.com:8883 as {device_id}")
            received = {}
            while {"telemetry", "status"} - received.keys():
                message = backend.next_message()
                name = "telemetry" if message.topic == topics(project)["telemetry"] else "status"
                received[name] = message
            assert received["status"].payload == project.device().status.online.encode()
            assert received["telemetry"].payload.startswith(b"{")
            # The broker can deliver a message before the device has logged that it sent it: wait for the line.
            device.wait_for(r"\[mqtt\] published \d+ bytes to " + re.escape(topics(project)["telemetry"]))
            summary = device.stop()
    assert summary.connected and summary.connects == 1 and summary.messages_out >= 2


def test_a_command_from_the_backend_reaches_the_handler_which_acks_on_the_ack_topic(project, start_broker):
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.credentials.backend) as backend:
        backend.subscribe(topics(project)["ack"])
        with SimDevice.start(project.run_for(device_id, broker)) as device:
            device.wait_for(r"\[mqtt\] subscribed to ")
            send_command(backend, device, command_topic(project), "blink 3")
            ack = backend.next_message()
            assert (ack.topic, ack.payload) == (topics(project)["ack"], b"blink 3")
            assert device.stop().messages_in >= 1


def test_a_killed_device_leaves_its_retained_offline_will(project, start_broker):
    device_id = project.device().id
    status = project.device().status
    broker = start_broker(project.broker_dir)
    with SimDevice.start(project.run_for(device_id, broker)) as device:
        device.wait_for(CONNECTED)
        device.wait_for(r"\[mqtt\] subscribed to ")     # the birth message went out before the subscriptions
        device.kill()
    with mqtt_session(broker, project.credentials.backend) as backend:
        backend.subscribe(status.topic)
        while backend.next_message().payload != status.offline.encode():  # "online" first if the will is late
            pass
    with mqtt_session(broker, project.credentials.backend) as late_subscriber:
        late_subscriber.subscribe(status.topic)
        retained = late_subscriber.next_message()
    assert (retained.payload, retained.retain) == (status.offline.encode(), True)


def test_after_a_broker_restart_the_device_reconnects_within_its_backoff_and_resubscribes(project, start_broker):
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    with SimDevice.start(project.run_for(device_id, broker)) as device:
        device.wait_for(CONNECTED)
        device.wait_for(r"\[mqtt\] subscribed to ")
        broker.restart()
        device.wait_for(CONNECTED, timeout=reconnect_bound_s())
        device.wait_for(r"\[mqtt\] subscribed to ")
        with mqtt_session(broker, project.credentials.backend) as backend:
            backend.subscribe(topics(project)["ack"])
            send_command(backend, device, command_topic(project), "after restart")
            assert backend.next_message().payload == b"after restart"
        summary = device.stop()
    assert summary.reconnects >= 1


def test_the_summary_read_from_the_device_log_agrees_with_what_the_broker_saw(project, start_broker):
    # The counts come from the firmware's own serial lines, not from hooks in the MQTT library: so they must
    # match what the broker carried between the device and the backend.
    import queue

    device = project.device()
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.credentials.backend) as backend:
        for topic in (topics(project)["telemetry"], topics(project)["status"], topics(project)["ack"]):
            backend.subscribe(topic)
        with SimDevice.start(project.run_for(device.id, broker)) as sim:
            sim.wait_for(r"\[mqtt\] subscribed to ")
            send_command(backend, sim, command_topic(project), "count me")
            sim.wait_for(r"\[mqtt\] published \d+ bytes to " + topics(project)["ack"])
            summary = sim.stop()
        from_device = []
        while True:
            try:
                message = backend.messages.get(timeout=1.0)
            except queue.Empty:
                break
            if not (message.topic == device.status.topic and message.payload == device.status.offline.encode()):
                from_device.append(message)   # everything but the will, which the broker publishes
    assert summary.connects == 1 and summary.last_error == ""
    acks = [message for message in from_device if message.topic == topics(project)["ack"]]
    assert summary.messages_out == len(from_device) >= 2   # the birth message, the ack, any telemetry
    assert summary.messages_in == len(acks) >= 1           # the handler acks every command it gets
