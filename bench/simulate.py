"""Figures for `gen simulate` (printed, never asserted):

- host build of one device: cold (empty cache) and warm (from the cache);         targets: < 20 s, < 2 s
- peak RSS (VmHWM) of one running simulated device, connected over mutual TLS;
- a fleet of N devices (default 50, one `secrets: nvs` firmware) running together against one broker:
  how many connected, how long until all had, and their RSS.                        target: 50 together

    .venv/bin/python bench/simulate.py [--fleet 50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from generator.simulate import host_build
from generator.firmware.render import USER_APP_SOURCE
from generator.output.generate import generate
from generator.output.manifest import read_manifest
from generator.broker.runner import running_broker
from generator.core.paths import PROJECT_ROOT
from generator.simulate.device_runs import LOCAL_ADDRESS, BrokerAddress, nvs_images, plan_runs
from generator.simulate.processes import started_devices, stop_devices, stream_devices
from generator.simulate.run import free_local_port
from generator.spec import load_spec

FLEET_EXAMPLE = PROJECT_ROOT / "projects" / "examples" / "fleet-nvs"
CONNECTED = re.compile(r"\[mqtt\] connected to ")


def fleet_spec(directory: Path, size: int) -> Path:
    """The fleet-nvs example with `size` devices of one target (one firmware, one NVS image each)."""
    shutil.copy(FLEET_EXAMPLE / "secrets.yaml", directory / "secrets.yaml")
    text = (FLEET_EXAMPLE / "device.yaml").read_text()
    head = text[: text.index("devices:")]
    devices = "".join(f"  - id: bench-{n:03d}\n" for n in range(1, size + 1))
    (directory / "device.yaml").write_text(head + "devices:\n" + devices)
    return directory / "device.yaml"


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of a running process, from /proc/<pid>/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def timed_build(firmware: Path, framework: str, cache: Path) -> tuple[Path, float]:
    begun = time.monotonic()
    binary = host_build.compile_firmware(firmware, framework, cache)
    return binary, time.monotonic() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=int, default=50, help="devices in the fleet run (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the fleet runs (default 10)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gen-bench-sim-") as scratch:
        scratch = Path(scratch)
        spec = load_spec(fleet_spec(scratch, args.fleet))
        out = scratch / "build"
        generate(spec, out)
        first = spec.devices[0]
        firmware = out / "devices" / first.id / "firmware"

        cache = scratch / "cache"
        binary, cold = timed_build(firmware, first.framework, cache)
        _, warm = timed_build(firmware, first.framework, cache)
        # A firmware never built before (the user's app source edited) while the runtime library is cached.
        app_source = spec.directory / USER_APP_SOURCE[first.framework]
        app_source.write_text(app_source.read_text() + "\n// edited for the benchmark\n")
        _, firmware_only = timed_build(firmware, first.framework, cache)
        print(f"host build ({first.framework}, one device): cold {cold:.1f} s (target < 20 s), "
              f"warm {warm:.2f} s (target < 2 s); an edited firmware, runtime library cached: {firmware_only:.1f} s")

        with running_broker(out / "broker", port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port()) as broker:
            address = BrokerAddress(broker.host, broker.port)
            ids = [device.id for device in spec.devices]
            runs = plan_runs(spec, ids, dict.fromkeys(ids, binary), nvs_images(out, read_manifest(out)), address)

            # One device alone: its peak RSS once connected.
            with started_devices(runs[:1]) as (device,):
                connected = []
                stream_devices([device], duration=3.0,
                               on_line=lambda _id, line: connected.append(line) if CONNECTED.search(line) else None)
                single_rss = vm_hwm_kib(device.pid)
                stop_devices([device], on_line=lambda *_: None)
            print(f"one device: {'connected' if connected else 'NOT connected'}, peak RSS {single_rss} KiB")

            # The fleet together.
            first_connect: dict[str, float] = {}
            begun = time.monotonic()

            def note(device_id: str, line: str) -> None:
                if CONNECTED.search(line) and device_id not in first_connect:
                    first_connect[device_id] = time.monotonic() - begun

            with started_devices(runs) as processes:
                started = time.monotonic() - begun
                stream_devices(processes, duration=args.seconds, on_line=note)
                rss = sorted(kib for kib in (vm_hwm_kib(p.pid) for p in processes) if kib is not None)
                summaries = stop_devices(processes, on_line=lambda *_: None)
            connects = sum(s.connects for s in summaries)
            ever = sum(1 for s in summaries if s.ever_connected)
            all_in = f"{max(first_connect.values()):.1f} s" if len(first_connect) == len(ids) else "never"
            print(f"fleet of {len(ids)} devices for {args.seconds:g} s: started in {started:.1f} s, "
                  f"{ever}/{len(ids)} connected (all by {all_in}), {connects} connects in total, "
                  f"messages out {sum(s.messages_out for s in summaries)}")
            if rss:
                print(f"fleet peak RSS per device: min {rss[0]} KiB, median {rss[len(rss) // 2]} KiB, "
                      f"max {rss[-1]} KiB; sum {sum(rss) / 1024:.0f} MiB")
            failed = [s for s in summaries if not s.ever_connected]
            for summary in failed[:5]:
                print(f"  {summary.device_id}: {summary.last_error}", file=sys.stderr)


if __name__ == "__main__":
    main()
