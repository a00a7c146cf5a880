"""What a command costs before it does anything: CPU seconds (user + system) of `gen --version`, `gen --help` and
`gen check` of a 1,000-device spec, each next to a bare `python -c pass` of the same interpreter, measured in the
same run (the median of --runs runs each).

    .venv/bin/python bench/cli.py [--runs 15] [--devices 1000] [--code DIR]

--code DIR runs the gen in DIR (another checkout, e.g. `git archive <commit>` unpacked) for a before/after.

Targets (issue 22): --version and --help within 6x the bare interpreter; `gen check` of 1,000 devices within 2x
`gen --version` as the issue measured it (0.53-0.65 s) -- with --version now a few hundredths, that ratio is
printed too, and says what the spec itself costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import fleet_spec  # noqa: E402

GEN = [sys.executable, "-m", "generator"]
ENV = dict(os.environ)
ISSUE_VERSION_CPU = 0.53        # `gen --version` before issue 22 (the issue's lower figure)


def cpu_seconds(command: list[str]) -> float:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                               cwd=tempfile.gettempdir())   # not this checkout: --code decides
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return usage.ru_utime + usage.ru_stime


def median_cpu(command: list[str], runs: int) -> float:
    return statistics.median(cpu_seconds(command) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--code", type=Path, help="the checkout whose generator/ to run (default: this one)")
    args = parser.parse_args()
    if args.code:
        ENV["PYTHONPATH"] = str(args.code.resolve())
    with tempfile.TemporaryDirectory(prefix="gen-bench-") as work:
        spec = Path(work) / "device.yaml"
        spec.write_text(fleet_spec(args.devices, "nvs"))
        bare = median_cpu([sys.executable, "-c", "pass"], args.runs)
        version = median_cpu(GEN + ["--version"], args.runs)
        help_ = median_cpu(GEN + ["--help"], args.runs)
        check = median_cpu(GEN + ["check", str(spec)], max(3, args.runs // 3))
    print(f"python -c pass           {bare * 1000:7.1f} ms CPU")
    print(f"gen --version            {version * 1000:7.1f} ms CPU   {version / bare:5.1f}x bare   (target <= 6x)")
    print(f"gen --help               {help_ * 1000:7.1f} ms CPU   {help_ / bare:5.1f}x bare   (target <= 6x)")
    print(f"gen check ({args.devices} devices) {check * 1000:7.1f} ms CPU   {check / version:5.1f}x gen --version now,"
          f" {check / ISSUE_VERSION_CPU:4.2f}x gen --version before (target <= 2x)")


if __name__ == "__main__":
    main()
