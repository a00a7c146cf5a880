"""`gen simulate`: the generated firmware, compiled for Linux against the host runtime, run against the generated
Mosquitto broker. A user sees a device connect over mutual TLS without a board; we get our proof that the firmware
works.

    generate(spec, OUT) → running_broker(OUT/broker, free port) → compile_firmware per distinct firmware
      → one process per device (GEN_SIM_CONNECT_TO sends the dialled broker name to the local broker; the
        name is still what TLS verifies) → stdout streamed as `<id> | line` → SIGTERM → `[sim] stopped`

Each device's summary (connects, messages out and in, last error) is read from its own serial lines
(generator.firmware.log), what a user would see on the board's monitor: the runtime's MQTT libraries keep no
counts for us, so the real PubSubClient or esp-mqtt could be linked in their place.

The plan (which binary, which environment) is a pure function of the spec, OUT and the broker address; only
`run_devices` and `simulate` touch processes. The runtime's contract (env vars, the summary line) is
templates/host/README.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from generator.broker.install import BrokerReload
from generator.broker.rabbitmq_runner import LocalCluster, find_rabbitmq, running_cluster
from generator.broker.render import check_runnable_here
from generator.broker.runner import RunningBroker, find_mosquitto, running_broker
from generator.core.errors import GenError, UserError
from generator.core.files import PRIVATE_DIR_MODE, ensure_dir
from generator.firmware.fingerprint import firmware_fingerprint
from generator.output.generate import generate
from generator.output.layout import BROKER_DIR, firmware_dir
from generator.output.manifest import read_manifest
from generator.provision.service import ProvisioningService, ServiceOptions
from generator.simulate.bootstrap_route import with_bootstrap_port
from generator.simulate.clock import shifted_clock, shifted_environment
from generator.simulate.cluster import KILLED_NODE, check_kill_node, node_routes, routed_to_nodes
from generator.simulate.device_runs import (
    LOCAL_ADDRESS,
    BrokerAddress,
    DeviceSummary,
    EventSink,
    Faults,
    default_flash_root,
    default_host_build_cache,
    every_device_connected,
    flash_devices,
    nvs_images,
    plan_runs,
    select_devices,
)
from generator.simulate.host_build import compile_firmware, find_toolchain
from generator.simulate.departed import erase_departed_flash
from generator.simulate.private_cache import forget_departed_builds
from generator.simulate.processes import LineSink, ScheduledAction, run_devices
from generator.spec import Spec


@dataclass(frozen=True)
class SimulateOptions:
    device_ids: tuple[str, ...] = ()
    all_devices: bool = False
    duration: float | None = None
    broker: BrokerAddress | None = None          # an already running broker; None: start the generated one
    faults: Faults = Faults()
    out_dir: Path | None = None
    cache_dir: Path | None = None                # host build cache; None: default_host_build_cache()
    days_ahead: float = 0.0                      # run broker, devices and provisioning this far in the future
    flash_root: Path | None = None               # the simulated devices' flash; None: default_flash_root(spec)
    ota_server: BrokerAddress | None = None      # where update downloads go; None: gen ota serve on 127.0.0.1
    build_only: bool = False                     # compile (and sign, with ota:) without starting anything


@dataclass(frozen=True)
class SimulationResult:
    summaries: tuple[DeviceSummary, ...]
    broker: BrokerAddress

    @property
    def ok(self) -> bool:
        return every_device_connected(self.summaries) or not self.summaries


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL_ADDRESS, 0))
        return probe.getsockname()[1]




def compile_devices(spec: Spec, out_dir: Path, device_ids: Sequence[str], *, cache_dir: Path | None,
                    on_event: EventSink = lambda _: None,
                    on_progress: EventSink = lambda _: None) -> dict[str, Path]:
    """One host binary per distinct firmware: devices whose generated firmware is identical (a `secrets: nvs`
    fleet of one target) share it. Returns device id -> executable."""
    cache = Path(cache_dir) if cache_dir is not None else default_host_build_cache()
    if cache_dir is None:
        ensure_dir(cache.parent, PRIVATE_DIR_MODE)    # ~/.cache/gen: host builds and the simulated flash
    groups: dict[tuple[str, str], list[str]] = {}
    for device_id in device_ids:
        framework = spec.device(device_id).framework
        groups.setdefault((framework, firmware_fingerprint(Path(out_dir) / firmware_dir(device_id))),
                          []).append(device_id)
    binaries: dict[str, Path] = {}
    for (framework, _), members in groups.items():
        begun = time.monotonic()
        binary = compile_firmware(Path(out_dir) / firmware_dir(members[0]), framework, cache,
                                  lambda text: on_progress(f"host build of {members[0]}: {text}"))
        shared = f", shared by {len(members)} devices" if len(members) > 1 else ""
        on_event(f"host build of {members[0]} ({framework}{shared}): {time.monotonic() - begun:.1f} s")
        binaries.update(dict.fromkeys(members, binary))
    gone = forget_departed_builds(cache, spec.path, binaries, [device.id for device in spec.devices])
    if gone:
        on_event(f"deleted {len(gone)} host build(s) of devices that left the spec or changed their key")
    return binaries


def keep_flash_private(spec: Spec, out_dir: Path, flash_root: Path, on_event: EventSink) -> None:
    """The simulated flash of each device: private; wiped when the device left the spec or its key changed."""
    wiped = erase_departed_flash(spec, out_dir, flash_root, prepare=True)
    if wiped:
        on_event(f"erased the simulated flash of {', '.join(wiped)} (left the spec or got a new key)")


def simulate(spec: Spec, options: SimulateOptions, *, on_line: LineSink,
             on_event: EventSink = lambda _: None,
             progress: Callable[[], contextlib.AbstractContextManager[EventSink]] | None = None) -> SimulationResult:
    """The whole `gen simulate`: generate, start the broker (unless given one), compile, run, summarise.
    `progress()`: a context that hears each step of the host build while it runs (generator.cli.progress)."""
    device_ids = select_devices(spec, options.device_ids, all_devices=options.all_devices)
    if options.broker is not None and options.faults.restart_broker_after is not None:
        raise UserError("--restart-broker-after needs the broker gen simulate starts itself",
                        hint="drop --broker, or restart your broker yourself")
    check_kill_node(spec.broker, kill_node_after=options.faults.kill_node_after, own_broker=options.broker is not None,
                    restart_broker_after=options.faults.restart_broker_after)
    find_toolchain()                    # a missing compiler or broker says so before anything is generated
    if options.broker is None:
        find_rabbitmq() if spec.broker.clustered else find_mosquitto()
        if spec.broker.external:
            check_runnable_here(spec, Path("."))
    out_dir = Path(options.out_dir) if options.out_dir is not None else spec.default_out_dir
    ahead = dt.timedelta(days=options.days_ahead)
    world_env = shifted_environment(ahead) if options.days_ahead else {}   # libfaketime is checked before generating
    generated = generate(spec, out_dir, device_ids=list(device_ids))
    if options.broker is None:
        check_runnable_here(spec, out_dir / BROKER_DIR)
    on_event(f"generated {len(generated.devices)} device(s) and the broker into {out_dir}")
    with (progress() if progress is not None else contextlib.nullcontext(lambda _: None)) as on_progress:
        binaries = compile_devices(spec, out_dir, device_ids, cache_dir=options.cache_dir, on_event=on_event,
                                   on_progress=on_progress)
    keep_flash_private(spec, out_dir, options.flash_root or default_flash_root(spec), on_event)
    flashes = flash_devices(spec, out_dir, device_ids, binaries, on_event=on_event)
    if options.build_only:
        for device_id, flash in flashes.items():
            on_event(f"{device_id}: its signed host image is in {flash.boot_dir}/")
        return SimulationResult(summaries=(), broker=options.broker or BrokerAddress(LOCAL_ADDRESS, 0))

    if options.days_ahead:
        on_event(f"the clock of the broker, the devices and the provisioning service is {options.days_ahead:g} "
                 f"days ahead: {dt.datetime.now(dt.timezone.utc) + ahead:%Y-%m-%d %H:%M} UTC")
    given = with_bootstrap_port(spec, out_dir, options.broker) if options.broker is not None else None
    with _cluster_for(spec, out_dir, given, on_event) as cluster, \
            _broker_for(out_dir, given or _first_node(cluster), world_env) as (address, running), \
            _provisioning_for(spec, running, on_event, shifted_clock(ahead)):
        on_event(f"broker: {address}" + (" (started from " + str(out_dir / BROKER_DIR) + ")" if running else ""))
        if running is None and address.provision_port is not None:
            on_event(f"bootstrap listener (devices that make their own key): {address.host}:{address.provision_port}")
        actions = []
        if running is not None and options.faults.restart_broker_after is not None:
            actions.append(ScheduledAction(options.faults.restart_broker_after, "restarting the broker",
                                           running.restart))
        runs = plan_runs(spec, device_ids, binaries, nvs_images(out_dir, read_manifest(out_dir)), address,
                         options.faults, flash_root=options.flash_root or default_flash_root(spec),
                         flashes=flashes, ota_server=options.ota_server)
        runs = tuple(dataclasses.replace(run, environment=run.environment + tuple(world_env.items())) for run in runs)
        if cluster is not None:
            runs = _routed_to_cluster(spec, cluster, runs, options.faults, actions)
        how_long = f"for {options.duration:g} s" if options.duration is not None else "until Ctrl-C"
        on_event(f"running {len(runs)} device(s) {how_long}")
        summaries = run_devices(runs, duration=options.duration, on_line=on_line, actions=actions,
                                on_event=on_event)
    return SimulationResult(summaries=summaries, broker=address)


def _routed_to_cluster(spec: Spec, cluster: LocalCluster, runs: tuple, faults: Faults,
                       actions: list[ScheduledAction]) -> tuple:
    """Each node name to its own node's port; with --kill-node-after, the kill -9 of the first node scheduled."""
    routes = node_routes(spec.broker, cluster.ports, LOCAL_ADDRESS)
    if faults.kill_node_after is not None:
        node = cluster.nodes[KILLED_NODE - 1]
        actions.append(ScheduledAction(
            faults.kill_node_after,
            f"killing node {KILLED_NODE} ({spec.broker.dial_hosts[KILLED_NODE - 1]}, {node.name}) with kill -9",
            lambda: cluster.kill(KILLED_NODE)))
    return tuple(dataclasses.replace(run, environment=routed_to_nodes(run.environment, routes)) for run in runs)


@contextlib.contextmanager
def _cluster_for(spec: Spec, out_dir: Path, given: BrokerAddress | None, on_event: EventSink
                 ) -> Iterator[LocalCluster | None]:
    """broker.engine: rabbitmq without --broker: the local cluster of `gen broker up` (one node per spec node)."""
    if given is not None or not spec.broker.clustered:
        yield None
        return
    on_event(f"starting a {len(spec.broker.nodes)}-node RabbitMQ cluster on {LOCAL_ADDRESS} (about a minute)")
    with running_cluster(Path(out_dir) / BROKER_DIR, nodes=len(spec.broker.nodes)) as cluster:
        on_event("cluster nodes: " + ", ".join(f"{name} -> {LOCAL_ADDRESS}:{port}"
                                               for name, port in zip(spec.broker.dial_hosts, cluster.ports)))
        yield cluster


def _first_node(cluster: LocalCluster | None) -> BrokerAddress | None:
    return BrokerAddress(LOCAL_ADDRESS, cluster.ports[0]) if cluster is not None else None


@contextlib.contextmanager
def _broker_for(out_dir: Path, given: BrokerAddress | None, env: Mapping[str, str]
                ) -> Iterator[tuple[BrokerAddress, RunningBroker | None]]:
    """The broker the devices talk to: the one given, or the generated one on a free local port."""
    if given is not None:
        yield given, None
        return
    with running_broker(Path(out_dir) / BROKER_DIR, port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port(), env=env) as broker:
        yield BrokerAddress(broker.host, broker.port, broker.provision_port), broker


@contextlib.contextmanager
def _provisioning_for(spec: Spec, broker: RunningBroker | None, on_event: EventSink,
                      clock: Callable[[], dt.datetime]) -> Iterator[None]:
    """`gen provision serve` beside the broker gen simulate runs, when a device of the spec makes its own key (the
    devices provision and rotate against it as in the field); with a broker of your own, run it yourself."""
    if broker is None or not spec.provisions_devices:
        if spec.provisions_devices:
            on_event("devices make their own key: run `gen provision serve SPEC` beside your broker")
        yield
        return
    options = ServiceOptions(broker_host=LOCAL_ADDRESS, broker_port=broker.port, broker_dir=broker.private_dir,
                             reload=BrokerReload(pid_file=broker.pid_file), tls_name=spec.broker.host)
    service = ProvisioningService(spec, options, on_log=on_event, clock=clock)
    stop = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            service.run(stop)
        except GenError as error:       # reported when the run ends; the devices then show they never connected
            failure.append(error)

    thread = threading.Thread(target=serve, name="gen-provision", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        if failure:
            on_event(f"the provisioning service stopped: {failure[0]}")
