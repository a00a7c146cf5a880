"""Stopping gen with SIGTERM (kill, a supervisor) or Ctrl-C stops what it started: no orphaned broker, whether the
signal comes while the broker is starting or while it runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize("moment", ["while-starting", "while-running"])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_stopping_gen_broker_up_stops_its_mosquitto(tmp_path, stop, moment):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "projects/examples/arduino-mtls", project, ignore=shutil.ignore_patterns("pki", "build"))
    port = free_port()
    gen = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(project / "device.yaml"),
                            "--port", str(port), "--bind", "127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(gen.stdout), daemon=True)
    reader.start()
    try:
        if moment == "while-starting":
            # mosquitto listens a moment before it logs "running": the signal lands inside gen's startup wait.
            wait_for(lambda: port_is_open(port) or gen.poll() is not None, "the broker never listened")
        else:
            wait_for(lambda: any("running on" in line for line in output) or gen.poll() is not None,
                     "gen never said the broker runs")
        assert gen.poll() is None, "".join(output)
        gen.send_signal(stop)
        assert gen.wait(timeout=30) == 130, "".join(output)
        reader.join(timeout=5)
        assert "Traceback" not in "".join(output)
        wait_for(lambda: not port_is_open(port), "mosquitto is still listening after gen stopped", timeout=10)
    finally:
        if gen.poll() is None:
            os.kill(gen.pid, signal.SIGKILL)


def test_an_interrupt_while_mosquitto_starts_stops_it(tmp_path, monkeypatch):
    """Deterministic form of the race above: Ctrl-C or SIGTERM arriving during the startup wait (mosquitto
    already spawned, in its own session, so the terminal's Ctrl-C never reaches it) must not leave it running."""
    from generator.broker import runner as mosquitto_runner
    from generator.cli.broker_commands import write_broker_files
    from generator.spec import load_spec

    project = tmp_path / "project"
    shutil.copytree(ROOT / "projects/examples/arduino-mtls", project, ignore=shutil.ignore_patterns("pki", "build"))
    broker_dir = write_broker_files(load_spec(project / "device.yaml"), project / "build")

    spawned: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        spawned.append(real_popen(*args, **kwargs))
        return spawned[-1]

    port = free_port()
    real_sleep = time.sleep

    def interrupted_sleep(seconds):
        # The signal lands once mosquitto has loaded its files and listens, before gen has read "running".
        deadline = time.monotonic() + 30
        while not port_is_open(port) and time.monotonic() < deadline:
            real_sleep(0.01)
        raise KeyboardInterrupt

    monkeypatch.setattr(mosquitto_runner.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(mosquitto_runner.time, "sleep", interrupted_sleep)
    with pytest.raises(KeyboardInterrupt):
        with mosquitto_runner.running_broker(broker_dir, port, bind_address="127.0.0.1"):
            pass
    assert spawned, "mosquitto was never started"
    monkeypatch.undo()
    try:
        spawned[0].wait(timeout=10)
    except subprocess.TimeoutExpired:
        spawned[0].kill()
        pytest.fail("mosquitto kept running after an interrupt during its startup")

