"""A 200-device fleet (`secrets: nvs`, two targets) through `gen build`, with the stand-in PlatformIO from
tests/fake_tools (real esptool for the merges when it is installed, else the stand-in).

Prints how many times PlatformIO ran and the time spent outside it (generate: PKI + rendering + NVS images;
plan: fingerprinting the projects; artifacts: copying, hashing, flash.json, manifest).
Targets: one PlatformIO build per target, and under 10 s outside PlatformIO.

    .venv/bin/python bench/fleet.py [--devices 200] [--jobs 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_tools import calls, install_fake_tools  # noqa: E402
from generator.firmware_build.plan import plan_build  # noqa: E402
from generator.firmware_build.platformio import BuildTimer  # noqa: E402
from generator.firmware_build.run import run_build  # noqa: E402
from generator.spec.catalogue import load_catalogue  # noqa: E402
from generator.output.generate import generate  # noqa: E402
from generator.output.manifest import read_manifest  # noqa: E402
from generator.spec import load_spec  # noqa: E402

TARGETS = ("esp32-arduino", "esp32c3-arduino")


def fleet_spec(count: int) -> str:
    devices = "\n".join(f"  - id: node-{n:03d}" + (f"\n    target: {TARGETS[1]}" if n % 2 else "")
                        for n in range(count))
    return f"""project: bigfleet
target: {TARGETS[0]}
wifi:
  ssid: !secret wifi_ssid
  password: !secret wifi_password
broker:
  host: mqtt.example.com
auth: mtls
secrets: nvs
publish:
  - name: telemetry
    topic: fleet/{{id}}/telemetry
    interval: 5
subscribe:
  - name: command
    filter: fleet/{{id}}/cmd
status:
  topic: fleet/{{id}}/status
devices:
{devices}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gen-bench-fleet-"))
    try:
        fake_bin = install_fake_tools(work / "bin", tools=("pio",) if shutil.which("esptool") or
                                      shutil.which("esptool", path=os.path.dirname(sys.executable)) else ("pio", "esptool"))
        os.environ["PATH"] = os.pathsep.join([str(fake_bin), os.environ.get("PATH", ""), os.path.dirname(sys.executable)])
        os.environ["FAKE_TOOLS_LOG"] = str(work / "calls.jsonl")
        os.environ["PLATFORMIO_CORE_DIR"] = str(work / "pio-core")
        spec_dir = work / "bigfleet"
        spec_dir.mkdir()
        (spec_dir / "device.yaml").write_text(fleet_spec(args.devices))
        (spec_dir / "secrets.yaml").write_text("wifi_ssid: fleet-wifi\nwifi_password: fleet-passphrase-1\n")

        for run in ("first build (new PKI)", "second build (PKI and projects reused)"):
            started = time.perf_counter()
            spec = load_spec(spec_dir / "device.yaml")
            out = spec.default_out_dir
            generated = time.perf_counter()
            generate(spec, out)
            generated_done = time.perf_counter()
            plan = plan_build(out, read_manifest(out), load_catalogue())
            planned = time.perf_counter()
            timer = BuildTimer()
            result = run_build(plan, jobs=args.jobs, timer=timer)
            finished = time.perf_counter()

            total = finished - started
            outside = total - timer.platformio_seconds
            runs = [c for c in calls(work / "calls.jsonl", "pio") if c["argv"][:1] == ["run"]]
            print(f"{run}: {len(spec.devices)} devices, {len(result.images)} images")
            print(f"  PlatformIO builds (pio run):      {timer.platformio_builds}   (all calls incl. metadata: "
                  f"{timer.platformio_calls}; pio run so far: {len(runs)})")
            print(f"  time in PlatformIO (stand-in):    {timer.platformio_seconds:6.2f} s")
            print(f"  time outside PlatformIO:          {outside:6.2f} s   (target < 10 s)")
            print(f"    load spec                       {generated - started:6.2f} s")
            print(f"    generate (PKI, projects, NVS)   {generated_done - generated:6.2f} s")
            print(f"    plan (fingerprint projects)     {planned - generated_done:6.2f} s")
            print(f"    build outside pio (merge, artifacts, manifest) "
                  f"{finished - planned - timer.platformio_seconds:6.2f} s")
            ok = timer.platformio_builds == len(TARGETS) and outside < 10
            print(f"  {'OK' if ok else 'MISSED'}: one build per target and under 10 s outside PlatformIO")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
