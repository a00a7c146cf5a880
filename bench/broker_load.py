"""Load on the generated broker: N concurrent mTLS devices, each with its own certificate from the project's PKI,
connect to `gen broker up` and publish at a set rate; a backend client subscribed to every device topic counts what
arrives. Prints connects/s, messages/s, broker RSS per connection and failures.

    .venv/bin/python bench/broker_load.py 2000 --duration 60 --rate 0.2
    .venv/bin/python bench/broker_load.py 50000 --duration 60 --rate 0.02

One asyncio event loop, no threads. The PKI (N device certs) is created in a temp project on the first run of a
given --workdir and reused after that. The open-file limit is raised for this process and the broker (as root
also the hard limit), and devices connect from several loopback source addresses (127.0.0.2, .3, ...) when one
address's ephemeral port range could not hold them all. Exit code 1 when anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from generator.core import mqtt_wire  # noqa: E402  (after the path set-up above)

BROKER_NAME = "localhost"
HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 60.0
CONCURRENT_HANDSHAKES = 64     # the listen backlog is 100: keep the SYN queue from overflowing
KEEPALIVE_S = 120


# ---------------------------------------------------------------------------------------------- MQTT bytes


def connect_packet(client_id: str) -> bytes:
    return mqtt_wire.connect_packet(client_id, keepalive=KEEPALIVE_S)


def publish_packet(topic: str, payload: bytes) -> bytes:  # QoS 0
    return mqtt_wire.publish_packet(topic, payload)


def subscribe_packet(topic_filter: str) -> bytes:
    return mqtt_wire.subscribe_packet(1, [(topic_filter, 0)])


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header >> 4, await reader.readexactly(length)


# ---------------------------------------------------------------------------------------------- setup


def fleet_spec(count: int, broker: str | None = None) -> str:
    """`count` mTLS devices; `broker`: the spec's broker section (default: this machine's Mosquitto)."""
    devices = "".join(f"  - id: dev-{index:05d}\n" for index in range(count))
    broker = broker or f"""\
broker:
  host: {BROKER_NAME}
  names: [{BROKER_NAME}, {HOST}]
  port: 8883
"""
    return f"""\
project: loadtest
target: esp32-arduino
wifi:
  ssid: bench
  password: bench-passphrase
{broker}auth: mtls
status:
  topic: devices/{{id}}/status
publish:
  - name: telemetry
    topic: devices/{{id}}/telemetry
    interval: 10
subscribe:
  - name: command
    filter: devices/{{id}}/cmd
    qos: 0
devices:
{devices}"""


@dataclass
class Client:
    name: str
    context: ssl.SSLContext


def client_contexts(spec_path: Path) -> tuple[list[Client], Client]:
    """Issues (or reuses) every device cert and the backend's; one OpenSSL context per client."""
    from generator.pki.spec_credentials import spec_credentials
    from generator.spec import load_spec

    started = time.perf_counter()
    spec = load_spec(spec_path)
    loaded = time.perf_counter()
    credentials = spec_credentials(spec)
    issued = time.perf_counter()
    print(f"spec with {len(spec.devices)} devices loaded in {loaded - started:.1f} s; "
          f"PKI ready in {issued - loaded:.1f} s")
    keys = spec_path.parent / "client-keys"
    keys.mkdir(mode=0o700, exist_ok=True)

    def context_for(client) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=client.ca_pem.decode())
        cert, key = keys / f"{client.name}.pem", keys / f"{client.name}.key"
        cert.write_bytes(client.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(client.key_pem)
        context.load_cert_chain(cert, key)
        return context

    devices = [Client(device.id, context_for(credentials.devices[device.id])) for device in spec.devices]
    return devices, Client("backend", context_for(credentials.backend))


# ---------------------------------------------------------------------------------------------- load


@dataclass
class Stats:
    connected: int = 0
    connect_failures: int = 0
    refused: int = 0
    dropped: int = 0
    sent: int = 0
    received: int = 0
    errors: list[str] = field(default_factory=list)
    connects_per_s: float = 0.0
    kib_per_connection: float = 0.0

    def fail(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.errors) < 10:
            self.errors.append(message)


async def open_session(client: Client, port: int, source: str | None = None
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection(HOST, port, ssl=client.context, server_hostname=BROKER_NAME,
                                                   local_addr=(source, 0) if source else None)
    writer.write(connect_packet(client.name))
    await writer.drain()
    kind, body = await read_packet(reader)
    return reader, writer, body[1] if kind == 2 else -1


async def device(client: Client, port: int, stats: Stats, gate: asyncio.Semaphore, all_connected: asyncio.Event,
                 stop: asyncio.Event, rate: float, source: str | None) -> None:
    async with gate:
        try:
            reader, writer, code = await asyncio.wait_for(open_session(client, port, source), CONNECT_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            stats.fail("connect_failures", f"{client.name}: {type(error).__name__}: {error}")
            return
        if code != 0:
            stats.fail("refused", f"{client.name}: CONNACK {code}")
            writer.close()
            return
        stats.connected += 1
    watch = asyncio.ensure_future(reader.read(1))   # anything from the broker (or EOF) means trouble
    await all_connected.wait()
    topic, interval = f"devices/{client.name}/telemetry", 1.0 / rate
    next_at = time.monotonic() + random.uniform(0, interval)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
                break
            except asyncio.TimeoutError:
                pass
            if watch.done():
                stats.fail("dropped", f"{client.name}: the broker closed the connection")
                return
            writer.write(publish_packet(topic, b"%d" % stats.sent))
            await writer.drain()
            stats.sent += 1
            next_at += interval
        if watch.done():
            stats.fail("dropped", f"{client.name}: the broker closed the connection")
    except Exception as error:  # noqa: BLE001
        stats.fail("dropped", f"{client.name}: {type(error).__name__}: {error}")
    finally:
        watch.cancel()
        writer.write(b"\xe0\x00")  # DISCONNECT
        writer.close()


async def backend(client: Client, port: int, stats: Stats, subscribed: asyncio.Event) -> None:
    reader, writer, code = await open_session(client, port)
    assert code == 0, f"backend refused: CONNACK {code}"
    writer.write(subscribe_packet("devices/#"))
    await writer.drain()
    while True:
        kind, _ = await read_packet(reader)
        if kind == 9:
            subscribed.set()
        elif kind == 3:
            stats.received += 1


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process, or of this one."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mosquitto_pid(parent: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        for child in children:
            if Path(f"/proc/{child}/comm").read_text().strip() == "mosquitto":
                return int(child)
        time.sleep(0.05)
    raise RuntimeError("no mosquitto process under gen broker up")


async def run_load(devices: list[Client], backend_client: Client, port: int, broker_pid: int, duration: float,
                   rate: float, sources: list[str | None]) -> Stats:
    stats = Stats()
    gate = asyncio.Semaphore(CONCURRENT_HANDSHAKES)
    all_connected, stop, subscribed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    backend_task = asyncio.ensure_future(backend(backend_client, port, stats, subscribed))
    await asyncio.wait_for(subscribed.wait(), CONNECT_TIMEOUT_S)
    idle_rss = rss_kib(broker_pid)

    started, broker_cpu, own_cpu = time.perf_counter(), cpu_seconds(broker_pid), cpu_seconds()
    tasks = [asyncio.ensure_future(device(c, port, stats, gate, all_connected, stop, rate,
                                          sources[index * len(sources) // len(devices)]))
             for index, c in enumerate(devices)]
    while stats.connected + stats.connect_failures + stats.refused < len(devices):
        await asyncio.sleep(0.05)
    connect_time = time.perf_counter() - started
    loaded_rss = rss_kib(broker_pid)
    print(f"connect phase   {stats.connected}/{len(devices)} connected in {connect_time:.1f} s -> "
          f"{stats.connected / connect_time:.0f} connects/s (TLS 1.3 handshake + CONNECT/CONNACK, "
          f"{CONCURRENT_HANDSHAKES} in flight); CPU: broker {cpu_seconds(broker_pid) - broker_cpu:.1f} s, "
          f"load generator {cpu_seconds() - own_cpu:.1f} s")

    all_connected.set()
    hold_started, hold_broker_cpu = time.perf_counter(), cpu_seconds(broker_pid)
    sent_before, received_before = stats.sent, stats.received
    peak_rss = loaded_rss
    while time.perf_counter() - hold_started < duration:
        await asyncio.sleep(min(5.0, duration))
        peak_rss = max(peak_rss, rss_kib(broker_pid))
    held = time.perf_counter() - hold_started
    hold_broker_cpu = cpu_seconds(broker_pid) - hold_broker_cpu
    still_connected = stats.connected - stats.dropped
    stop.set()
    await asyncio.sleep(1.0)  # let the last messages arrive at the backend
    await asyncio.gather(*tasks, return_exceptions=True)
    backend_task.cancel()
    sent, received = stats.sent - sent_before, stats.received - received_before
    print(f"hold            {held:.0f} s with {still_connected} devices connected at {rate:g} msg/s each: "
          f"sent {sent} ({sent / held:.0f} msg/s), backend received {received} ({received / held:.0f} msg/s); "
          f"broker CPU {100 * hold_broker_cpu / held:.0f}% of one core")
    per_connection = (loaded_rss - idle_rss) / max(1, stats.connected)
    stats.connects_per_s, stats.kib_per_connection = stats.connected / connect_time, per_connection
    print(f"broker RSS      idle {idle_rss / 1024:.1f} MiB, {stats.connected} clients {loaded_rss / 1024:.1f} MiB "
          f"(peak {peak_rss / 1024:.1f} MiB) -> {per_connection:.1f} KiB per connection")
    if received < sent:
        stats.errors.append(f"backend received {received} of {sent} QoS 0 messages")
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devices", type=int, help="number of concurrent mTLS devices")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to hold every connection")
    parser.add_argument("--rate", type=float, default=0.2, help="messages per second per device (QoS 0)")
    parser.add_argument("--port", type=int, default=0, help="TLS port (default: a free one)")
    parser.add_argument("--workdir", type=Path, default=None, help="keeps the project and PKI for reruns")
    parser.add_argument("--engine", choices=("mosquitto", "rabbitmq"), default="mosquitto",
                        help="rabbitmq: hold the devices on a local RabbitMQ cluster, after a Mosquitto run of "
                             "--mosquitto-devices in the same run for comparison")
    parser.add_argument("--nodes", type=int, default=3, help="with --engine rabbitmq: cluster nodes")
    parser.add_argument("--mosquitto-devices", type=int, default=5000,
                        help="with --engine rabbitmq: the Mosquitto run's size (one process must hold it)")
    args = parser.parse_args()

    # With a cluster no one process holds every connection: a node holds N/nodes, a client process at most 9,000.
    per_process = (max(args.mosquitto_devices, -(-args.devices // args.nodes)) if args.engine == "rabbitmq"
                   else args.devices)
    if not raise_open_files_limit(per_process + 1000):
        return 1
    if args.engine == "rabbitmq":
        return compare_with_cluster(args)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="broker-load-"))
    try:
        return run(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)   # it holds every device key


def compare_with_cluster(args: argparse.Namespace) -> int:
    """Mosquitto at a size one process holds, then the cluster at N, in one run; both figures side by side."""
    import asyncio.sslproto

    from rabbitmq_load import run_cluster

    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024   # the client's read buffer: 256 KiB per connection otherwise
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="broker-load-"))
    try:
        mosquitto = argparse.Namespace(**{**vars(args), "devices": min(args.devices, args.mosquitto_devices),
                                          "duration": 10.0, "rate": 0.05})
        print(f"--- Mosquitto, {mosquitto.devices} devices (one process)")
        mosquitto_failures, mosquitto_stats = run(mosquitto, workdir, with_stats=True)
        print(f"--- RabbitMQ, {args.devices} devices on {args.nodes} nodes")
        cluster_failures, line = run_cluster(args.devices, args.nodes, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("--- same run")
    print(f"mosquitto x1    {mosquitto.devices} held, {mosquitto_stats.connects_per_s:.0f} connects/s, "
          f"memory per connection {mosquitto_stats.kib_per_connection / 1024:.3f} MB; failures {mosquitto_failures}")
    print(line)
    return 1 if mosquitto_failures or cluster_failures else 0


def raise_open_files_limit(needed: int) -> bool:
    """Soft limit to the hard one, and as root the hard one to `needed` (the broker, started by gen broker up,
    inherits both: mosquitto_runner raises its soft limit to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed and os.geteuid() == 0:
        hard = needed
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:
        current = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        print(f"cannot raise the open-file limit to {hard}: {error}. The hard limit here is {current}, and raising "
              f"it needs CAP_SYS_RESOURCE (a container may not have it): one broker process can then hold at most "
              f"about {current - 100} connections. Run with fewer devices, or where the limit can be raised "
              f"(LimitNOFILE in the broker's systemd unit)")
        return False
    if hard < needed:
        print(f"open-file limit {hard} is too low for {needed} descriptors; raise `ulimit -Hn` (or run as root)")
        return False
    print(f"open files      limit {hard} (this process and the broker)")
    return True


def source_addresses(count: int) -> list[str | None]:
    """Loopback source addresses so that no single one needs more ephemeral ports than its range has (the kernel
    tracks ports per (source, destination) pair): None (the default) while one address is enough."""
    low, high = (int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    per_address = (high - low + 1) * 9 // 10
    if count <= per_address:
        return [None]
    return [f"127.0.0.{2 + index}" for index in range(-(-count // per_address))]


def run(args: argparse.Namespace, workdir: Path, with_stats: bool = False):
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"fleet-{args.devices}" / "device.yaml"
    spec_path.parent.mkdir(exist_ok=True)
    if not spec_path.exists():
        spec_path.write_text(fleet_spec(args.devices))
    devices, backend_client = client_contexts(spec_path)

    import socket

    port = args.port
    if not port:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
    up = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(spec_path), "--port", str(port),
                           "--bind", HOST], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          cwd=PROJECT_ROOT)
    try:
        line = up.stdout.readline()
        if not re.search(r"running on .* port \d+ \(TLS\)", line):
            print(f"gen broker up did not start: {line}")
            return 1
        print(f"broker          {line.strip()}")
        sources = source_addresses(len(devices))
        if sources != [None]:
            print(f"sources         {len(devices)} devices connect from {', '.join(map(str, sources))}")
        stats = asyncio.run(run_load(devices, backend_client, port, mosquitto_pid(up.pid), args.duration,
                                     args.rate, sources))
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=10)
        except subprocess.TimeoutExpired:
            up.kill()
    failures = stats.connect_failures + stats.refused + stats.dropped
    print(f"failures        {failures} (connect {stats.connect_failures}, refused {stats.refused}, "
          f"dropped {stats.dropped})")
    for error in stats.errors:
        print(f"  {error}")
    if with_stats:
        return failures + len(stats.errors), stats
    return 1 if failures or stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
