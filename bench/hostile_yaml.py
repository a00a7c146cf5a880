"""How fast, and in how much memory, the spec reader refuses hostile YAML (target: each in under a second).

    .venv/bin/python bench/hostile_yaml.py

Each case is written to a temporary file and read with `read_spec_source`, as `gen check` reads a spec, in a
process of its own; the time, the process's peak memory (RSS) and the message are printed. Asserts nothing.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.core.errors import GenError  # noqa: E402
from generator.spec.source import MAX_FILE_BYTES, read_spec_source  # noqa: E402

HEAD = "project: hostile\nwifi: {ssid: net, password: '12345678'}\nbroker: {host: mqtt.example.com}\n"


def alias_bomb(levels: int = 9) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return HEAD + "\n".join(lines) + "\ndevice: {id: x}\n"


CASES = {
    "alias bomb (10^9 values)": alias_bomb,
    "nested 100,000 deep": lambda: HEAD + "x: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "a 3 MB scalar": lambda: HEAD + "x: '" + "a" * 3_000_000 + "'\n",
    "a 100,000-digit integer": lambda: HEAD + "keepalive: " + "9" * 100_000 + "\ndevice: {id: x}\n",
    "1,000,000 tiny nodes": lambda: HEAD + "x: [" + "1," * 1_000_000 + "1]\n",
    "a file over the size limit": lambda: HEAD + "#" * (MAX_FILE_BYTES + 1) + "\n",
}


def refuse(name: str, spec: Path) -> None:
    """In a child process: read one case and print its figures."""
    spec.write_text(CASES[name]())
    started = time.perf_counter()
    try:
        read_spec_source(spec)
        outcome = "ACCEPTED"
    except GenError as error:
        outcome = error.message.split(": ", 1)[-1].splitlines()[-1][:70]
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:<28} {elapsed * 1000:6.0f} ms  peak RSS {peak_mib:5.0f} MiB  {outcome}", flush=True)


def main() -> None:
    if len(sys.argv) == 3:
        refuse(sys.argv[1], Path(sys.argv[2]))
        return
    with tempfile.TemporaryDirectory() as directory:
        for name in CASES:
            subprocess.run([sys.executable, __file__, name, str(Path(directory) / "device.yaml")], check=True)


if __name__ == "__main__":
    main()
