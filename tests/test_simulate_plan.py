"""gen simulate's plan and bookkeeping: which broker a device's connections go to, what it is told through GEN_SIM_*,
how its summary line is read, and that a device process is always stopped and accounted for."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from generator.errors import UserError
from generator.simulate import (
    BrokerAddress,
    DeviceRun,
    Faults,
    connect_to_value,
    device_environment,
    every_device_connected,
    parse_broker_address,
    parse_summary_line,
    nvs_images,
    plan_runs,
    run_devices,
    select_devices,
)
from generator.spec import load_spec
from generator.manifest import read_manifest
from generator.paths import PROJECT_ROOT
from simulate_support import simulated_project

EXAMPLES = PROJECT_ROOT / "projects" / "examples"


def test_every_name_on_the_broker_cert_at_the_dialled_port_goes_to_the_local_broker():
    value = connect_to_value(("mqtt.example.com", "mqtt.example.com", "localhost"), 8883,
                             BrokerAddress("127.0.0.1", 40123))
    assert value == "mqtt.example.com:8883:127.0.0.1:40123,localhost:8883:127.0.0.1:40123"


def test_an_nvs_device_is_given_its_own_image_and_an_embed_device_none(tmp_path_factory):
    fleet = simulated_project("fleet-nvs", tmp_path_factory)
    images = nvs_images(fleet.out_dir, read_manifest(fleet.out_dir))
    runs = plan_runs(fleet.spec, ["sensor-01", "sensor-02"], dict.fromkeys(["sensor-01", "sensor-02"], Path("/b")),
                     images, BrokerAddress("127.0.0.1", 1))
    assert [run.env["GEN_SIM_NVS"] for run in runs] == [
        str(fleet.out_dir / "devices" / device_id / "nvs.bin") for device_id in ("sensor-01", "sensor-02")]
    assert all(Path(run.env["GEN_SIM_NVS"]).is_file() for run in runs)
    single = load_spec(EXAMPLES / "arduino-mtls" / "device.yaml")
    env = dict(device_environment(single.devices[0], address=BrokerAddress("127.0.0.1", 1), nvs_image=None))
    assert "GEN_SIM_NVS" not in env
    assert env["GEN_SIM_CONNECT_TO"].startswith("mqtt.example.com:8883:127.0.0.1:1")


def test_the_wifi_drop_switch_reaches_the_runtime_only_when_asked_for():
    device = load_spec(EXAMPLES / "arduino-mtls" / "device.yaml").devices[0]
    address = BrokerAddress("127.0.0.1", 1)
    assert "GEN_SIM_DROP_WIFI_AFTER" not in dict(device_environment(device, address=address, nvs_image=None))
    env = dict(device_environment(device, address=address, nvs_image=None,
                                  faults=Faults(drop_wifi_after=2.5, wifi_down_for=3)))
    assert (env["GEN_SIM_DROP_WIFI_AFTER"], env["GEN_SIM_WIFI_DOWN_FOR"]) == ("2.5", "3")


def test_devices_are_chosen_by_id_or_all_and_an_unknown_id_is_a_user_error():
    fleet = load_spec(EXAMPLES / "fleet-nvs" / "device.yaml")
    assert len(select_devices(fleet)) == 11
    assert select_devices(fleet, ["sensor-02", "sensor-02"]) == ("sensor-02",)
    with pytest.raises(UserError, match="no device 'sensor-99'"):
        select_devices(fleet, ["sensor-99"])
    with pytest.raises(UserError, match="exclude each other"):
        select_devices(fleet, ["sensor-01"], all_devices=True)


@pytest.mark.parametrize("text", ["localhost", "localhost:", ":8883", "host:port", "host:70000"])
def test_a_broker_address_that_is_not_host_colon_port_is_a_user_error(text):
    with pytest.raises(UserError, match="not HOST:PORT"):
        parse_broker_address(text)


def test_the_summary_line_is_read_and_other_lines_are_not():
    line = ('[sim] summary {"connected": true, "connects": 2, "reconnects": 1, "messages_out": 7, '
            '"messages_in": 1, "last_error": ""}')
    assert parse_summary_line(line)["reconnects"] == 1
    assert parse_summary_line("[mqtt] connected to mqtt.example.com:8883 as a") is None
    assert parse_summary_line("[sim] summary {broken") is None


FAKE_DEVICE = textwrap.dedent("""\
    import signal, sys, time
    connected = sys.argv[1] == "ok"
    def stop(*_):
        print('[sim] summary {"connected": %s, "connects": %d, "reconnects": 0, "messages_out": 3, '
              '"messages_in": 0, "last_error": "%s"}' % ("true" if connected else "false", int(connected),
              "" if connected else "X509 - Certificate verification failed"), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("[boot] device", flush=True)
    while True:
        time.sleep(0.05)
    """)


def fake_device(tmp_path: Path, name: str, outcome: str) -> DeviceRun:
    """A stand-in that follows the runtime's contract: lines on stdout, a summary line on SIGTERM."""
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'fake.py'} {outcome}\n")
    script.chmod(0o755)
    (tmp_path / "fake.py").write_text(FAKE_DEVICE)
    return DeviceRun(name, script, ())


def test_a_run_streams_each_line_with_its_device_and_collects_every_summary(tmp_path):
    runs = [fake_device(tmp_path, "dev-a", "ok"), fake_device(tmp_path, "dev-b", "bad")]
    lines: list[tuple[str, str]] = []
    summaries = run_devices(runs, duration=0.5, on_line=lambda device, line: lines.append((device, line)))
    assert ("dev-a", "[boot] device") in lines and ("dev-b", "[boot] device") in lines
    by_id = {summary.device_id: summary for summary in summaries}
    assert by_id["dev-a"].ever_connected and by_id["dev-a"].messages_out == 3
    assert not by_id["dev-b"].ever_connected
    assert "verification failed" in by_id["dev-b"].last_error
    assert not every_device_connected(summaries)


def test_a_device_that_dies_without_a_summary_counts_as_not_connected(tmp_path):
    script = tmp_path / "crash.sh"
    script.write_text("#!/bin/sh\necho '[boot] device'\nkill -SEGV $$\n")
    script.chmod(0o755)
    (summary,) = run_devices([DeviceRun("crashy", script, ())], duration=5, on_line=lambda *_: None)
    assert not summary.reported and not summary.ever_connected
    assert "killed by signal" in summary.last_error
