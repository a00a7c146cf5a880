"""broker_load.py --engine rabbitmq: N mTLS devices held on a local RabbitMQ cluster of --nodes nodes (the files
gen renders for broker.engine: rabbitmq, run by generator.broker.rabbitmq_runner), spread over the nodes' ports.
Prints connects/s and broker memory per connection per node. Only OUT/broker/ is rendered (no firmware)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from broker_load import (CONCURRENT_HANDSHAKES, Client, Stats, client_contexts, device, fleet_spec, rss_kib,
                         source_addresses)

# A node's memory alarm blocks every publisher: set it well above ~0.35 MB x the connections a node holds here.
MB_PER_CONNECTION = 0.4
BASE_MB = 1024


def cluster_spec(count: int, nodes: int) -> str:
    names = ", ".join(f"node{index}.bench" for index in range(1, nodes + 1))
    return fleet_spec(count, broker=f"""\
broker:
  engine: rabbitmq
  host: localhost
  nodes: [{names}]
  names: [localhost, 127.0.0.1]
  port: 8883
""")


def node_pid(node) -> int:
    return int((node.directory / "node.pid").read_text().strip())


WORKERS_MAX_DEVICES = 9000   # one client process holds at most its open-file limit (20,000 here, not raisable)


async def load_slice(devices: list[Client], ports: list[int], offset: int, connected, measured) -> tuple[Stats, float]:
    stats = Stats()
    gate = asyncio.Semaphore(CONCURRENT_HANDSHAKES // 2)
    all_connected, stop = asyncio.Event(), asyncio.Event()
    per_port = -(-len(devices) // len(ports))
    sources = source_addresses(per_port)
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(device(client, ports[(offset + index) % len(ports)], stats, gate, all_connected,
                                          stop, 0.001, sources[(index // len(ports)) * len(sources) // per_port]))
             for index, client in enumerate(devices)]
    while stats.connected + stats.connect_failures + stats.refused < len(devices):
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    connected.put((stats.connected, elapsed))
    all_connected.set()
    while not measured.is_set():             # held while the parent reads the nodes' memory
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)                   # a dropped connection shows here
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats, elapsed


def load_cluster(devices: list[Client], ports: list[int], pids: list[int]) -> tuple[Stats, float, list[int]]:
    """The devices in client processes of at most WORKERS_MAX_DEVICES each (forked: they inherit the TLS
    contexts); returns the summed stats, the connect phase's length and each node's RSS with all connected."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    workers = -(-len(devices) // WORKERS_MAX_DEVICES)
    connected, results, measured = context.Queue(), context.Queue(), context.Event()
    slices = [devices[index::workers] for index in range(workers)]

    def work(index: int) -> None:
        stats, elapsed = asyncio.run(load_slice(slices[index], ports, index, connected, measured))
        results.put((stats.connected, stats.connect_failures, stats.refused, stats.dropped, stats.errors, elapsed))

    processes = [context.Process(target=work, args=(index,)) for index in range(workers)]
    for process in processes:
        process.start()
    phases = [connected.get(timeout=1800) for _ in processes]
    loaded = [rss_kib(pid) for pid in pids]
    measured.set()
    total = Stats()
    elapsed = max(phase[1] for phase in phases)
    for _ in processes:
        held, failures, refused, dropped, errors, _ = results.get(timeout=600)
        total.connected += held
        total.connect_failures += failures
        total.refused += refused
        total.dropped += dropped
        total.errors += errors[: 10 - len(total.errors)]
    for process in processes:
        process.join(30)
    return total, elapsed, loaded


def run_cluster(count: int, nodes: int, workdir: Path) -> tuple[int, str]:
    """Returns (failures, the figures line)."""
    from generator.broker.rabbitmq_render import render_rabbitmq
    from generator.broker.rabbitmq_runner import running_cluster
    from generator.core.files import write_tree
    from generator.pki.spec_credentials import spec_credentials
    from generator.spec import load_spec

    spec_path = workdir / f"cluster-{count}-{nodes}" / "device.yaml"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    if not spec_path.exists():
        spec_path.write_text(cluster_spec(count, nodes))
    devices, _backend = client_contexts(spec_path)
    spec = load_spec(spec_path)
    rendered = render_rabbitmq(spec, spec_credentials(spec).broker)
    broker_dir = spec_path.parent / "broker"
    write_tree(broker_dir, rendered.files, modes=rendered.modes)
    watermark = f"{int(BASE_MB + MB_PER_CONNECTION * count / nodes)}MB"
    started = time.perf_counter()
    with running_cluster(broker_dir, nodes=nodes, watermark=watermark) as cluster:
        print(f"cluster         {nodes} nodes up and {count} users imported in {time.perf_counter() - started:.0f} s "
              f"(memory watermark {watermark} per node)")
        pids = [node_pid(node) for node in cluster.nodes]
        idle = [rss_kib(pid) for pid in pids]
        stats, elapsed, loaded = load_cluster(devices, cluster.ports, pids)
    per_node = [(after - before) / 1024 / max(1, stats.connected / nodes) for before, after in zip(idle, loaded)]
    failures = stats.connect_failures + stats.refused + stats.dropped
    line = (f"rabbitmq x{nodes}     {stats.connected}/{count} held, {stats.connected / elapsed:.0f} connects/s, "
            f"memory per connection per node {', '.join(f'{mb:.2f}' for mb in per_node)} MB "
            f"(RSS per node {', '.join(f'{kib / 1024:.0f}' for kib in loaded)} MiB); failures {failures}")
    for error in stats.errors:
        print(f"  {error}")
    return failures, line
