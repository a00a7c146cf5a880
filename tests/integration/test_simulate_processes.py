"""gen simulate's device processes, with stand-ins for the firmware: each line streamed with its device, every
device stopped and accounted for, a device that dies counted as not connected."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from generator.simulate.device_runs import DeviceRun, every_device_connected
from generator.simulate.processes import run_devices

FAKE_DEVICE = textwrap.dedent("""\
    import signal, sys, time
    connected = sys.argv[1] == "ok"
    def stop(*_):
        print("[sim] stopped by SIGTERM", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("[boot] device", flush=True)
    if connected:
        print("[mqtt] connected to mqtt.example.com:8883 as dev-a", flush=True)
        for _ in range(3):
            print("[mqtt] published 5 bytes to devices/dev-a/telemetry", flush=True)
    else:
        print("[mqtt] connect failed: state -2 CONNECT_FAILED (TCP or TLS); TLS error -0x2700: "
              "X509 - Certificate verification failed", flush=True)
    while True:
        time.sleep(0.05)
    """)


def fake_device(tmp_path: Path, name: str, outcome: str) -> DeviceRun:
    """A stand-in that prints what the firmware and the runtime print: its log, then a stop line on SIGTERM."""
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


def test_a_device_that_dies_instead_of_stopping_counts_as_not_connected(tmp_path):
    script = tmp_path / "crash.sh"
    script.write_text("#!/bin/sh\necho '[boot] device'\nkill -SEGV $$\n")
    script.chmod(0o755)
    (summary,) = run_devices([DeviceRun("crashy", script, ())], duration=5, on_line=lambda *_: None)
    assert not summary.reported and not summary.ever_connected
    assert "killed by signal" in summary.last_error
