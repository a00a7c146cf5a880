"""How fast the PKI issues device identities, next to the tutorial's openssl recipe.

    .venv/bin/python bench/pki.py [N] [--recipe M] [--key-type ec-p256|rsa-2048]

Ours: `PkiStore.ensure_devices` for N new ids: key + cert + index entry, every file written atomically with its
mode (0600 keys in 0700 dirs), index.json written once. Then the same N again (all reused).
Recipe: per device `openssl genrsa 2048`, `openssl req -new`, `openssl x509 -req -CA` (three processes, like
the tutorials), run M times and scaled to N. Prints figures; asserts nothing. Target: 10,000 ECDSA identities
in under 5 s, at least 100x the recipe's rate.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.pki.store import PkiStore  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_ours(root: Path, count: int, key_type: str) -> tuple[float, float, float, float]:
    started = time.perf_counter()
    store = PkiStore.open(root / "pki", project="bench", key_type=key_type)
    ca_seconds = time.perf_counter() - started
    ids = [f"esp32-{i:06d}" for i in range(count)]
    started, cpu_started = time.perf_counter(), cpu_seconds()
    store.ensure_devices(ids, key_type=key_type, validity_days=825)
    issue_seconds = time.perf_counter() - started
    issue_cpu = cpu_seconds() - cpu_started
    started = time.perf_counter()
    PkiStore.open(root / "pki", project="bench").ensure_devices(ids, key_type=key_type, validity_days=825)
    reuse_seconds = time.perf_counter() - started
    keys = list((root / "pki" / "private" / "devices").iterdir())
    assert len(keys) == count and all(k.stat().st_mode & 0o777 == 0o600 for k in keys[:: max(1, count // 50)])
    return ca_seconds, issue_seconds, issue_cpu, reuse_seconds


def bench_recipe(root: Path, count: int) -> float:
    root.mkdir(parents=True)
    quiet = {"cwd": root, "check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "365", "-extensions", "v3_ca", "-nodes",
                    "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=recipe-ca"], **quiet)
    started = time.perf_counter()
    for i in range(count):
        name = f"esp32-{i:06d}"
        subprocess.run(["openssl", "genrsa", "-out", f"{name}.key", "2048"], **quiet)
        subprocess.run(["openssl", "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
                        "-subj", f"/CN={name}"], **quiet)
        subprocess.run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                        "-CAcreateserial", "-out", f"{name}.crt", "-days", "365"], **quiet)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000, help="device identities to issue")
    parser.add_argument("--recipe", type=int, default=None, help="recipe runs (default: min(N, 30))")
    parser.add_argument("--key-type", default="ec-p256", choices=("ec-p256", "rsa-2048"))
    args = parser.parse_args()
    recipe_count = args.recipe if args.recipe is not None else min(args.count, 30)

    work = Path(tempfile.mkdtemp(prefix="bench-pki-", dir=os.environ.get("BENCH_DIR")))
    try:
        load_before = os.getloadavg()[0]
        ca_s, ours_s, ours_cpu, reuse_s = bench_ours(work / "ours", args.count, args.key_type)
        recipe_s = bench_recipe(work / "recipe", recipe_count) if recipe_count else float("nan")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours_rate = args.count / ours_s
    recipe_rate = recipe_count / recipe_s if recipe_count else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} at start (other work competes for "
          f"the CPUs: compare CPU seconds), python {sys.version.split()[0]}, dir {work.parent}")
    print(f"CA creation (once): {ca_s * 1000:.0f} ms")
    print(f"{'':28}{'identities':>12}{'seconds':>12}{'identities/s':>15}")
    print(f"{'gen PKI (' + args.key_type + ', new)':28}{args.count:>12}{ours_s:>12.2f}{ours_rate:>15.0f}"
          f"   CPU {ours_cpu:.2f} s over all processes")
    print(f"{'gen PKI (rerun, all reused)':28}{args.count:>12}{reuse_s:>12.2f}{args.count / reuse_s:>15.0f}")
    if recipe_count:
        print(f"{'openssl recipe (rsa-2048)':28}{recipe_count:>12}{recipe_s:>12.2f}{recipe_rate:>15.1f}")
        print(f"{'  scaled to ' + str(args.count):28}{args.count:>12}{args.count / recipe_rate:>12.0f}")
        print(f"speed-up: {ours_rate / recipe_rate:.0f}x the recipe's rate")
    print(f"target: 10,000 ECDSA identities in under 5 s (2,000/s) -> "
          f"{'met' if args.key_type == 'ec-p256' and ours_rate >= 2000 else 'not met'} at {ours_rate:.0f}/s")


if __name__ == "__main__":
    main()
