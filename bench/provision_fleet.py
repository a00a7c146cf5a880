"""A fleet rehearsal of device-born keys (issue 14): N devices of one spec (`pki.key_origin: device`, `secrets:
nvs`, one firmware) provision on first boot, then all rotate at once on the operator's command, against one
Mosquitto and one `gen provision serve` (its own process, default rate limit). The devices are the real firmware on
the host runtime: one host binary, started N times, each with its own NVS image and simulated flash.

Prints (never asserts) the time of each phase, the broker's peak RSS (VmHWM from /proc), the service's, and the
outcome checked against the PKI's index: every device connected as itself with a new certificate, none issued a
certificate twice (per phase: one certificate per device; all serials distinct), the old ones revoked.

    .venv/bin/python bench/provision_fleet.py [--devices 200] [--framework arduino|espidf] [--timeout 600]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.broker.runner import running_broker  # noqa: E402
from generator.core.paths import PROJECT_ROOT  # noqa: E402
from generator.output.generate import generate  # noqa: E402
from generator.output.manifest import read_manifest  # noqa: E402
from generator.pki.spec_identities import open_spec_pki  # noqa: E402
from generator.provision.service import PER_DEVICE_ISSUE_INTERVAL_S  # noqa: E402
from generator.simulate.device_runs import LOCAL_ADDRESS, BrokerAddress, nvs_images, plan_runs  # noqa: E402
from generator.simulate.processes import started_devices, stop_devices, stream_devices  # noqa: E402
from generator.simulate.run import compile_devices, free_local_port  # noqa: E402
from generator.spec import load_spec  # noqa: E402

FLEET_EXAMPLE = PROJECT_ROOT / "projects" / "examples" / "fleet-nvs"
FRAMEWORKS = {"arduino": "esp32-arduino", "espidf": "esp32-espidf"}
CONFIRMED = re.compile(r"\[cred\] step 5: certificate ([0-9A-F]+) confirmed")
CONNECTED = re.compile(r"\[mqtt\] connected to \S+:\d+ as ")
REFUSED = re.compile(r"\[cred\] (refused|service busy): (.*) \(asking again")


def fleet_spec(directory: Path, size: int, framework: str) -> Path:
    """The fleet-nvs example with `size` devices that make their own key."""
    shutil.copy(FLEET_EXAMPLE / "secrets.yaml", directory / "secrets.yaml")
    text = (FLEET_EXAMPLE / "device.yaml").read_text()
    head = text[: text.index("devices:")].replace("target: esp32-arduino", f"target: {FRAMEWORKS[framework]}")
    pki = "pki:\n  key_origin: device\n  validity_days: 30\n  renew_before_days: 10\n"
    devices = "".join(f"  - id: node-{n:03d}\n" for n in range(1, size + 1))
    (directory / "device.yaml").write_text(head + pki + "devices:\n" + devices)
    return directory / "device.yaml"


def vm_kib(pid: int, field: str = "VmHWM") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Phase:
    """Watches the devices' output until each has printed a confirmation (step 5) of a certificate it did not have."""

    def __init__(self, ids: list[str], known: dict[str, str]):
        self.waiting = set(ids)
        self.known = dict(known)
        self.serial: dict[str, str] = {}
        self.connects = collections.Counter()
        self.refusals = collections.Counter()
        self.begun = time.monotonic()
        self.first_at: float | None = None
        self.done_at: float | None = None

    def line(self, device_id: str, line: str) -> None:
        if CONNECTED.search(line):
            self.connects[device_id] += 1
        refused = REFUSED.search(line)
        if refused:
            self.refusals[f"{refused.group(1)}: {refused.group(2)}"] += 1
        confirmed = CONFIRMED.search(line)
        if confirmed and device_id in self.waiting and confirmed.group(1) != self.known.get(device_id):
            self.serial[device_id] = confirmed.group(1)
            self.waiting.discard(device_id)
            now = time.monotonic() - self.begun
            self.first_at = self.first_at if self.first_at is not None else now
            if not self.waiting:
                self.done_at = now


def watch(processes, phase: Phase, timeout: float, sample) -> None:
    deadline = time.monotonic() + timeout
    while phase.waiting and time.monotonic() < deadline:
        stream_devices(processes, duration=0.5, on_line=phase.line)
        sample()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), default="arduino")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for each phase (s)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gen-bench-provision-") as scratch:
        scratch = Path(scratch)
        begun = time.monotonic()
        spec = load_spec(fleet_spec(scratch, args.devices, args.framework))
        out = scratch / "build"
        generate(spec, out)
        generated = time.monotonic() - begun
        ids = [device.id for device in spec.devices]
        began = time.monotonic()
        binaries = compile_devices(spec, out, ids, cache_dir=scratch / "cache")
        compiled = time.monotonic() - began
        print(f"{len(ids)} devices ({args.framework}, key_origin: device, one firmware: "
              f"{len(set(binaries.values()))} host binary); generate {generated:.1f} s, host build {compiled:.1f} s")

        with running_broker(out / "broker", port=free_local_port(), provision_port=free_local_port(),
                            bind_address=LOCAL_ADDRESS) as broker:
            service_log = scratch / "service.log"
            with open(service_log, "wb") as log:
                service = subprocess.Popen(
                    [sys.executable, "-m", "generator", "provision", "serve", str(spec.path), "--broker",
                     f"127.0.0.1:{broker.port}", "--broker-dir", str(broker.private_dir), "--broker-pid-file",
                     str(broker.pid_file)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                    env={**os.environ, "COLUMNS": "400"})
            peak = {"broker": 0, "service": 0, "load": 0.0}
            deadline = time.monotonic() + 60
            while "provision republished" not in service_log.read_text(errors="replace"):   # it listens now
                if service.poll() is not None or time.monotonic() > deadline:
                    sys.exit("gen provision serve did not start:\n" + service_log.read_text(errors="replace"))
                time.sleep(0.1)

            def sample() -> None:
                peak["broker"] = max(peak["broker"], vm_kib(broker.process.pid) or 0)
                peak["service"] = max(peak["service"], vm_kib(service.pid) or 0)
                peak["load"] = max(peak["load"], os.getloadavg()[0])

            try:
                address = BrokerAddress(broker.host, broker.port, broker.provision_port)
                runs = plan_runs(spec, ids, binaries, nvs_images(out, read_manifest(out)), address,
                                 flash_root=scratch / "flash")
                with started_devices(runs) as processes:
                    first = Phase(ids, {})
                    watch(processes, first, args.timeout, sample)
                    report("first boot (bootstrap listener, CSR, certificate, switch, confirm)", first, len(ids))
                    broker_after_first = peak["broker"]
                    # The service takes one new certificate per device per PER_DEVICE_ISSUE_INTERVAL_S: a rotation
                    # asked for at once would only measure that wait.
                    stream_devices(processes, duration=PER_DEVICE_ISSUE_INTERVAL_S, on_line=first.line)

                    rotated = time.monotonic()
                    store = open_spec_pki(spec, create=False)
                    with store.batch():
                        for device_id in ids:
                            store.request_rotation(device_id)
                    requested = time.monotonic() - rotated
                    second = Phase(ids, first.serial)
                    watch(processes, second, args.timeout, sample)
                    print(f"rotation requests written to the index for all {len(ids)} in {requested:.2f} s")
                    report("rotation of all together (fresh key, CSR, trial connect, confirm, revoke old)", second,
                           len(ids))
                    stream_devices(processes, duration=2.0, on_line=second.line)
                    sample()
                    device_rss = sorted(k for k in (vm_kib(p.pid) for p in processes) if k is not None)
                    summaries = stop_devices(processes, on_line=lambda *_: None)
            finally:
                service.terminate()
                try:
                    service.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    service.kill()

            print(f"broker peak RSS (VmHWM): {peak['broker']} KiB after first boot "
                  f"{broker_after_first} KiB; provisioning service peak RSS {peak['service']} KiB")
            if device_rss:
                print(f"device processes: peak RSS median {device_rss[len(device_rss) // 2]} KiB, "
                      f"sum {sum(device_rss) / 1024:.0f} MiB; 1-min load average peaked at {peak['load']:.1f} "
                      f"on {os.cpu_count()} cores")
            connected_at_end = sum(1 for s in summaries if s.ever_connected)
            print(f"devices that ever connected as themselves: {connected_at_end}/{len(ids)}")
            check_index(spec, ids, first.serial, second.serial)
            decisions = collections.Counter(re.findall(r"decision=(\S+)", service_log.read_text(errors="replace")))
            print("service decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))


def report(name: str, phase: Phase, total: int) -> None:
    done = total - len(phase.waiting)
    when = f"all by {phase.done_at:.1f} s" if phase.done_at is not None else "NOT all (timed out)"
    first = f"first at {phase.first_at:.1f} s, " if phase.first_at is not None else ""
    print(f"{name}: {done}/{total} confirmed, {first}{when}")
    if phase.refusals:
        print("  answers the devices logged: " + "; ".join(f"{k} x{v}" for k, v in phase.refusals.most_common(5)))


def check_index(spec, ids: list[str], first: dict[str, str], second: dict[str, str]) -> None:
    store = open_spec_pki(spec, create=False)
    entries = [e for e in store.entries() if e.role == "device"]
    by_id = collections.defaultdict(list)
    for entry in entries:
        by_id[entry.id].append(entry)
    serials = [e.serial for e in entries]
    two_each = sum(1 for device_id in ids if len(by_id[device_id]) == 2)
    live_is_new = sum(1 for device_id in ids
                      if [f"{e.serial:X}" for e in by_id[device_id] if e.status == "valid"] == [second.get(device_id)]
                      and second.get(device_id) != first.get(device_id))
    old_revoked = sum(1 for device_id in ids
                      if [e.reason for e in by_id[device_id] if f"{e.serial:X}" == first.get(device_id)] ==
                      ["superseded"])
    print(f"index: {len(entries)} device certificates for {len(ids)} devices; exactly two each (first boot, "
          f"rotation): {two_each}/{len(ids)}; serials distinct: {len(set(serials)) == len(serials)}; "
          f"live certificate is the new one: {live_is_new}/{len(ids)}; old one revoked as superseded: "
          f"{old_revoked}/{len(ids)}")
    ok = two_each == live_is_new == old_revoked == len(ids) and len(set(serials)) == len(serials)
    print("OK: every device rotated once, no certificate issued twice" if ok else "MISSED: see the figures above")


if __name__ == "__main__":
    main()
