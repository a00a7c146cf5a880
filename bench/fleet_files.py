"""What `gen generate` writes for a large `secrets: nvs` fleet (1,000 devices, two targets), before and after:
files and bytes under OUT (firmware projects, NVS images, the rest), by this checkout and by another revision of
gen (by default `main`, unpacked with `git archive` into a temporary folder). Both runs use the same spec and the
same PKI (made once, copied), in the same process tree on the same machine, and print same-run ratios.

    .venv/bin/python bench/fleet_files.py [--devices 1000] [--before main]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from fleet import fleet_spec  # noqa: E402

GENERATE = ("import sys\nfrom generator.output.generate import generate\nfrom generator.spec import load_spec\n"
            "generate(load_spec(sys.argv[1]))\n")


def unpack(revision: str, into: Path) -> Path:
    """The tool as it is at `revision` of this repository, in a folder of its own."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_generate(checkout: Path, spec: Path) -> float:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run([sys.executable, "-c", GENERATE, str(spec)], cwd=checkout, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def tally(out: Path) -> dict[str, tuple[int, int]]:
    """{kind: (files, bytes)} under OUT: firmware projects, NVS images, links (a device's firmware/ to its image's
    project: counted as entries, their bytes are the link text), everything else."""
    kinds: dict[str, list[int]] = {"firmware projects": [0, 0], "nvs images": [0, 0], "links": [0, 0],
                                   "other": [0, 0]}
    for path in out.rglob("*"):
        if path.is_symlink():
            kinds["links"][0] += 1
            kinds["links"][1] += len(os.readlink(path))
            continue
        if not path.is_file():
            continue
        relative = path.relative_to(out).as_posix()
        kind = ("firmware projects" if "/firmware/" in f"/{relative}" else
                "nvs images" if relative.endswith("nvs.bin") else "other")
        kinds[kind][0] += 1
        kinds[kind][1] += path.stat().st_size
    return {kind: (files, size) for kind, (files, size) in kinds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--before", default="main", help="the git revision to compare with (default: main)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gen-bench-files-"))
    try:
        after_spec = work / "after" / "bigfleet"
        after_spec.mkdir(parents=True)
        (after_spec / "device.yaml").write_text(fleet_spec(args.devices))
        (after_spec / "secrets.yaml").write_text("wifi_ssid: fleet-wifi\nwifi_password: fleet-passphrase-1\n")
        after_seconds = run_generate(ROOT, after_spec / "device.yaml")   # makes the PKI too
        before_spec = work / "before" / "bigfleet"
        shutil.copytree(after_spec, before_spec, ignore=shutil.ignore_patterns("build", "src"))
        checkout = unpack(args.before, work / "checkout")
        before_seconds = run_generate(checkout, before_spec / "device.yaml")

        before, after = tally(before_spec / "build"), tally(after_spec / "build")
        print(f"gen generate, {args.devices} devices, secrets: nvs, two targets: {args.before} vs this checkout")
        print(f"  {'':20} {'files before':>12} {'files after':>12} {'MB before':>10} {'MB after':>10}")
        for kind in before:
            (bf, bb), (af, ab) = before[kind], after[kind]
            print(f"  {kind:20} {bf:12d} {af:12d} {bb / 1e6:10.2f} {ab / 1e6:10.2f}")
        bf, bb = (sum(v[i] for v in before.values()) for i in (0, 1))
        af, ab = (sum(v[i] for v in after.values()) for i in (0, 1))
        print(f"  {'total':20} {bf:12d} {af:12d} {bb / 1e6:10.2f} {ab / 1e6:10.2f}")
        print(f"  ratio after/before: files {af / bf:.3f}, bytes {ab / bb:.3f}")
        print(f"  time: before {before_seconds:.1f} s (PKI reused), after {after_seconds:.1f} s (PKI made)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
