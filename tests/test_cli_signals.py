"""Stopping gen with SIGTERM (kill, a supervisor) stops what it started, as Ctrl-C does: no orphaned broker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_gen_broker_up_stops_its_mosquitto_when_gen_is_stopped(tmp_path, stop):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "projects/examples/arduino-mtls", project,
                    ignore=shutil.ignore_patterns("pki", "build"))
    port = free_port()
    gen = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(project / "device.yaml"),
                            "--port", str(port), "--bind", "127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port_is_open(port):
            assert gen.poll() is None, gen.stdout.read()
            assert time.monotonic() < deadline, "the broker never started listening"
            time.sleep(0.1)
        gen.send_signal(stop)
        output, _ = gen.communicate(timeout=30)
        assert "stopping mosquitto" in output
        assert "Traceback" not in output
        deadline = time.monotonic() + 10
        while port_is_open(port):
            assert time.monotonic() < deadline, "mosquitto is still listening after gen stopped"
            time.sleep(0.1)
    finally:
        if gen.poll() is None:
            os.kill(gen.pid, signal.SIGKILL)
