"""`gen generate` of a large fleet: cold (a new PKI and an empty OUT), again with nothing changed, and the same fleet
ten times larger. Each run is `gen generate` in its own process; the figures are CPU seconds (user + system, the
process and its workers), printed with their same-run ratios.

    .venv/bin/python bench/generate.py [--devices 1000] [--secrets nvs|embed] [--scale 10] [--runs 3] [--code DIR]

--code DIR runs the gen in DIR (another checkout, e.g. `git archive <commit>` unpacked) for a before/after.

Targets (issue 22): regenerating with nothing changed costs under 25% of the cold run (that run compares the stamp
the cold run left in OUT; the same run the full way, stamp removed, is printed too); 10x the devices costs no
more than ~10x the time (nothing quadratic).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP_NAME = ".generate-stamp.json"     # generator.output.up_to_date: what a run with nothing changed compares
GEN = [sys.executable, "-m", "generator"]
ENV = dict(os.environ)


def fleet_spec(count: int, secrets: str) -> str:
    devices = "\n".join(f"  - id: node-{n:05d}" for n in range(count))
    return f"""project: bigfleet
target: esp32-arduino
wifi: {{ssid: bench-wifi, password: bench-passphrase}}
broker: {{host: mqtt.example.com}}
auth: mtls
secrets: {secrets}
publish:
  - {{name: telemetry, topic: "fleet/{{id}}/telemetry", interval: 5}}
subscribe:
  - {{name: command, filter: "fleet/{{id}}/cmd"}}
status: {{topic: "fleet/{{id}}/status"}}
devices:
{devices}
"""


def cpu_of(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one process and its children."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                               cwd=tempfile.gettempdir())   # not this checkout: --code decides
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")   # type: ignore
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - started


def project(root: Path, count: int, secrets: str) -> Path:
    root.mkdir(parents=True)
    spec = root / "device.yaml"
    spec.write_text(fleet_spec(count, secrets))
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--secrets", choices=("nvs", "embed"), default="nvs")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="cold and warm runs of the smaller fleet (median)")
    parser.add_argument("--code", type=Path, help="the checkout whose generator/ to run (default: this one)")
    args = parser.parse_args()
    if args.code:
        ENV["PYTHONPATH"] = str(args.code.resolve())
    with tempfile.TemporaryDirectory(prefix="gen-bench-") as work:
        colds, warms, fulls = [], [], []
        for run in range(args.runs):          # each cold run in a folder of its own: a new PKI and an empty OUT
            small = project(Path(work) / f"small-{run}", args.devices, args.secrets)
            colds.append(cpu_of(GEN + ["generate", str(small)])[0])
            warms.append(cpu_of(GEN + ["generate", str(small)])[0])
            (small.parent / "build" / STAMP_NAME).unlink(missing_ok=True)     # the full way, nothing to render
            fulls.append(cpu_of(GEN + ["generate", str(small)])[0])
        cold, warm, full = statistics.median(colds), statistics.median(warms), statistics.median(fulls)
        print(f"{args.devices} devices (secrets: {args.secrets}), median of {args.runs}: cold {cold:.2f} s CPU, "
              f"again with nothing changed {warm:.2f} s CPU   (cold runs {', '.join(f'{c:.2f}' for c in colds)})")
        print(f"  regenerate / cold = {warm / cold:.2f}   (target < 0.25)")
        print(f"  the full way without the stamp (every input read and checked, nothing rendered): {full:.2f} s CPU, "
              f"{full / cold:.2f} of cold")
        if args.scale > 1:
            large = project(Path(work) / "large", args.devices * args.scale, args.secrets)
            big, big_wall = cpu_of(GEN + ["generate", str(large)])
            print(f"{args.devices * args.scale} devices: cold {big:.2f} s CPU ({big_wall:.2f} s wall)")
            print(f"  {args.scale}x devices / 1x = {big / cold:.2f}   (target <= ~{args.scale})")

if __name__ == "__main__":
    main()
