"""`gen simulate` as a user runs it: generate, start the broker on a free port, compile, run, prefixed output, a
summary table and an exit code that says whether every device connected; the fault switches; missing tools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import find_free_port
from generator.simulate.device_runs import BrokerAddress, Faults
from generator.simulate.run import SimulateOptions, simulate
from simulate_support import simulated_project

FLEET = "fleet-nvs"


def gen(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True, text=True, timeout=300,
                          env=env, stdin=subprocess.DEVNULL)


def test_gen_simulate_streams_prefixed_output_prints_a_table_and_exits_0_when_every_device_connected(
        tmp_path_factory):
    # The session's fleet project and OUT: the same files in the same place, so the host build comes from cache.
    project = simulated_project(FLEET, tmp_path_factory)
    project.binary("sensor-01")
    result = gen("simulate", str(project.spec.path), "--device", "sensor-01", "--device", "sensor-02",
                 "--duration", "3", "--out", str(project.out_dir))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "sensor-01 | [mqtt] connected to mqtt.example.com:8883 as sensor-01" in result.stdout
    assert "sensor-02 | [mqtt] connected to mqtt.example.com:8883 as sensor-02" in result.stdout
    assert "sensor-01 | [sim] stopped by SIGTERM" in result.stdout   # the table is made from the lines above it
    table = result.stdout[result.stdout.index("simulated devices"):]
    assert "sensor-01" in table and "sensor-02" in table and "yes" in table and "sensor-03" not in table


def test_gen_simulate_exits_1_and_names_the_error_when_a_device_never_connects(tmp_path_factory):
    project = simulated_project(FLEET, tmp_path_factory)
    project.binary("sensor-01")
    nobody = f"127.0.0.1:{find_free_port()}"     # nothing listens there
    result = gen("simulate", str(project.spec.path), "--device", "sensor-01", "--duration", "2",
                 "--out", str(project.out_dir), "--broker", nobody)
    assert result.returncode == 1
    assert "never" in result.stdout and "could not resolve or reach mqtt.example.com:8883" in result.stdout
    assert "not connected: sensor-01" in result.stdout


# The faults come 3 s into the run: the first connect takes well under a second, even on a loaded machine.


def test_restarting_the_broker_mid_run_shows_as_a_reconnect_in_the_summary(tmp_path_factory):
    project = simulated_project(FLEET, tmp_path_factory)
    project.binary("sensor-01")
    events: list[str] = []
    result = simulate(project.spec, SimulateOptions(device_ids=("sensor-01",), duration=6, out_dir=project.out_dir,
                                                    faults=Faults(restart_broker_after=3)),
                      on_line=lambda *_: None, on_event=events.append)
    (summary,) = result.summaries
    assert "restarting the broker" in events
    assert result.ok and summary.connected and summary.reconnects >= 1


def test_dropping_wifi_mid_run_loses_the_session_and_the_device_comes_back(tmp_path_factory):
    project = simulated_project(FLEET, tmp_path_factory)
    project.binary("sensor-01")
    lines: list[str] = []
    result = simulate(project.spec, SimulateOptions(device_ids=("sensor-01",), duration=7, out_dir=project.out_dir,
                                                    faults=Faults(drop_wifi_after=3, wifi_down_for=1)),
                      on_line=lambda _id, line: lines.append(line))
    (summary,) = result.summaries
    assert any(line.startswith("[wifi] lost connection") for line in lines), "\n".join(lines)
    assert summary.connected and summary.reconnects >= 1, "\n".join(lines)


def test_without_a_compiler_gen_simulate_exits_1_with_the_install_command(tmp_path_factory):
    project = simulated_project(FLEET, tmp_path_factory)
    env = {name: value for name, value in os.environ.items() if name != "PATH"} | {"PATH": "/nonexistent"}
    result = gen("simulate", str(project.spec.path), "--duration", "1", "--out", str(project.out_dir), env=env)
    assert result.returncode == 1
    assert "g++" in result.stderr and "apt-get install" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_device_or_a_bad_broker_address_is_a_user_error(tmp_path_factory):
    project = simulated_project(FLEET, tmp_path_factory)
    unknown = gen("simulate", str(project.spec.path), "--device", "sensor-99", "--out", str(project.out_dir))
    bad_broker = gen("simulate", str(project.spec.path), "--broker", "localhost", "--out", str(project.out_dir))
    assert (unknown.returncode, bad_broker.returncode) == (2, 2)
    assert "sensor-99" in unknown.stderr and "HOST:PORT" in bad_broker.stderr


def test_a_simulation_against_a_given_broker_uses_it_and_starts_none(tmp_path_factory, start_broker):
    project = simulated_project(FLEET, tmp_path_factory)
    project.binary("sensor-01")
    broker = start_broker(project.broker_dir)
    result = simulate(project.spec, SimulateOptions(device_ids=("sensor-01",), duration=2, out_dir=project.out_dir,
                                                    broker=BrokerAddress(broker.host, broker.port)),
                      on_line=lambda *_: None)
    assert result.ok and result.broker == BrokerAddress(broker.host, broker.port)
    assert "as sensor-01" in broker.log_text()


def test_ctrl_c_stops_the_devices_prints_their_summary_and_exits_130(tmp_path_factory):
    project = simulated_project(FLEET, tmp_path_factory)
    project.binary("sensor-01")
    process = subprocess.Popen([sys.executable, "-m", "generator", "simulate", str(project.spec.path), "--device",
                                "sensor-01", "--out", str(project.out_dir)],   # no --duration: until Ctrl-C
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        for line in process.stdout:
            if "[mqtt] subscribed to" in line:
                break
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, rest + errors      # a shell's way to say "stopped by Ctrl-C"
    assert "interrupted" in rest and "sensor-01 | [sim] stopped by SIGTERM" in rest
    assert "simulated devices" in rest and "Traceback" not in errors
