"""`gen ota publish`, `gen ota serve`, `gen ota status`: firmware updates over the air."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from generator.cli.broker_override import broker_option
from generator.broker.rabbitmq_runner import recorded_mqtt_nodes
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console, err_console, plural, print_table
from generator.core.errors import ToolError, UserError
from generator.ota.announce import Address, Announcement, Downgrade, NodeReach, announcement, check_image, \
    publish_announcements, rollback_problem, slot_size
from generator.ota.ci_image import signed_for_publish
from generator.ota.nodes import BrokerNode, broker_nodes, one_node_of_many
from generator.ota.serve import listening_port, open_server, server_files
from generator.ota.status import node_statuses
from generator.output.generate import generate
from generator.output.layout import CLUSTER_UP_RECORD, firmware_dir
from generator.output.manifest import read_manifest
from generator.pki.layout import PkiLayout
from generator.pki.issuing import utcnow
from generator.pki.ota_signing import DOWNGRADE_VALID_DAYS, DOWNGRADE_VALID_DAYS_MAX, SigningKey, signing_key
from generator.simulate.device_runs import parse_broker_address
from generator.spec import Device, Spec, load_spec
from generator.spec.firmware_version import version_problem

LOCAL_ONLY = "127.0.0.1"
ota_app = typer.Typer(help="Firmware updates over the air: announce an image, serve it, see what devices run.",
                      no_args_is_help=True)
BROKER_OPTION = typer.Option(None, "--broker", metavar="HOST:PORT", help="Where the broker is, when not at "
                             "broker.host:broker.port (its certificate is still checked for broker.host). A "
                             "RabbitMQ cluster is used on every node (broker.nodes, or every node of the running "
                             "`gen broker up`, also when this names one of them); another address here is that "
                             "one node only.")


def _with_ota(spec: Spec) -> Spec:
    if spec.ota_port is None:
        raise UserError(f"{spec.path} has no `ota:`: its devices take no updates over the air",
                        hint="add `ota: {}` to the spec, then gen generate, gen build, and flash each device once "
                             "by USB (gen flash)")
    return spec


def _broker(text: str | None) -> Address | None:
    if text is None:
        return None
    address = parse_broker_address(text)
    return address.host, address.port


def _nodes(spec_path: Path, spec: Spec, given: str | None, out_dir: Path) -> tuple[BrokerNode, ...]:
    """Every broker node to publish on or read from: a cluster keeps retained messages per node (ota.nodes)."""
    local = recorded_mqtt_nodes(out_dir / CLUSTER_UP_RECORD) if spec.broker.clustered else []
    nodes = broker_nodes(spec.broker, _broker(broker_option(spec_path, given)), local)
    if one_node_of_many(spec.broker, nodes):
        err_console.print(f"gen: only {nodes[0].label}, one node of the {len(spec.broker.nodes)}-node cluster: a "
                          "cluster keeps retained messages per node, so devices on the other nodes are not "
                          "reached; leave the broker override out to use every node")
    return nodes


def _reached(spec: Spec, reach: NodeReach, did: str, out_dir: Path, *, missing: str) -> None:
    """Says on how many nodes it was done ("announced on 3 of 3 nodes"); exit 1, naming each node not reached and
    `missing` (what that means), when there is one."""
    if spec.broker.clustered:
        console.print(f"{did} {reach.summary()}: " + ", ".join(node.label for node in reach.reached))
    if not reach.missed:
        return
    for node, why in reach.missed:
        err_console.print(f"gen: not reached: {node.label}: {why}")
    stale = (f"; if gen broker up no longer runs, remove {out_dir / CLUSTER_UP_RECORD}"
             if (out_dir / CLUSTER_UP_RECORD).exists() else "")
    raise ToolError(f"{did} {reach.summary()} only, not on {', '.join(node.label for node, _ in reach.missed)}: "
                    f"{missing}",
                    hint=f"make those nodes reachable, then run the same command again{stale}")


def _selected(spec: Spec, device_ids: list[str] | None, all_devices: bool) -> list[Device]:
    if device_ids and all_devices:
        raise UserError("--device and --all exclude each other", hint="name devices with --device, or use --all")
    if not device_ids and not all_devices:
        raise UserError("say which devices: --device ID (repeatable) or --all")
    return (list(spec.devices) if all_devices
            else [spec.device(device_id) for device_id in dict.fromkeys(device_ids or [])])


def _built_image(out_dir: Path, device: Device) -> Path:
    record = read_manifest(out_dir).device(device.id)
    if record is None or record.artifacts is None:
        raise UserError(f"{device.id} has no build of its current firmware",
                        hint=f"run `gen build SPEC --device {device.id}` (or give an image with --image)")
    return out_dir / record.artifacts.dir / "firmware.bin"


def _downgrade(key: SigningKey, allow_downgrade: bool, valid_for: int | None) -> Downgrade | None:
    """How permissions are signed for --allow-downgrade (valid from now for --downgrade-valid-for days), or None."""
    if not allow_downgrade:
        if valid_for is not None:
            raise UserError("--downgrade-valid-for says how long a downgrade permission holds, and no downgrade is "
                            "announced", hint="add --allow-downgrade, or leave --downgrade-valid-for out")
        return None
    days = DOWNGRADE_VALID_DAYS if valid_for is None else valid_for
    return Downgrade(key, utcnow().replace(microsecond=0) + dt.timedelta(days=days))


def _downgrade_note(device: Device, downgrade: Downgrade | None) -> str:
    if downgrade is None:
        return ""
    return (f" (a deliberate downgrade, permitted while the device runs {device.firmware_version}, until "
            f"{downgrade.not_after:%Y-%m-%d %H:%M:%S} UTC)")


@ota_app.command("publish")
def publish(
    spec: Path = SPEC_ARGUMENT,
    device: Optional[list[str]] = typer.Option(None, "--device", metavar="ID",
                                               help="Announce to this device (repeatable)."),
    all_devices: bool = typer.Option(False, "--all", help="Announce to every device of the spec."),
    image: Optional[Path] = typer.Option(None, "--image", metavar="FILE",
                                         help="This image instead of each device's last `gen build` "
                                              "(OUT/artifacts/<id>/firmware.bin)."),
    sign: bool = typer.Option(False, "--sign", help="With --image: sign an unsigned image (a CI artifact) here with "
                              "the project's key first (pki/private/ota-signing-key.pem)."),
    version: Optional[str] = typer.Option(None, "--version", metavar="VERSION",
                                          help="The version the image is (default: the spec's firmware.version, as "
                                               "`gen build` built it)."),
    clear: bool = typer.Option(False, "--clear", help="Remove the retained announcement instead."),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade", help="Announce a version older than the spec's "
                                         "firmware.version as a deliberate downgrade: each announcement carries a "
                                         "permission signed with the OTA signing key for that device and image, "
                                         "while it runs the spec's firmware.version, for --downgrade-valid-for "
                                         "days (run it where the PKI lives). Devices refuse older images otherwise."),
    valid_for: Optional[int] = typer.Option(None, "--downgrade-valid-for", min=1, max=DOWNGRADE_VALID_DAYS_MAX,
                                            metavar="DAYS", help="With --allow-downgrade: how many days the "
                                            f"permission holds (default {DOWNGRADE_VALID_DAYS}); it holds only for "
                                            "a device running the spec's firmware.version."),
    broker: Optional[str] = BROKER_OPTION,
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Check each image (an app image for the device's chip, signed with the project's key, fitting its slot, not
    below the spec's security.secure_version, not older than the spec's version), put it where `gen ota serve`
    serves it once the broker has taken gen's OTA identity, and announce it on the device's OTA topic (retained,
    QoS 1). Each device keeps its current and previous image staged."""
    loaded = _with_ota(load_spec(spec))
    chosen = _selected(loaded, device, all_devices)
    if sign and image is None:
        raise UserError("--sign signs the image given with --image", hint="add --image FILE (e.g. a CI artifact)")
    out_dir = Path(out) if out is not None else loaded.default_out_dir
    nodes = _nodes(spec, loaded, broker, out_dir)
    if clear:
        reach = publish_announcements(loaded, {d.id: None for d in chosen}, nodes=nodes)
        for each in chosen:
            assert each.ota is not None
            console.print(f"cleared the announcement of {each.id} ({each.ota.topic})")
        _reached(loaded, reach, "cleared on", out_dir,
                 missing="devices that land there keep the old announcement until this is run again")
        return
    if version is not None and (bad_version := version_problem(version)) is not None:
        raise UserError(f"--version: {bad_version}", hint="give the version the image was built as, e.g. 1.3.0")
    key = signing_key(PkiLayout(loaded.pki.dir))
    downgrade = _downgrade(key, allow_downgrade, valid_for)
    generate(loaded, out_dir)          # the PKI's OTA identity, the broker's ACL, build records of current firmware
    announcements: dict[str, Announcement | None] = {}
    images: dict[str, bytes] = {}
    for each in chosen:
        wanted = version or each.firmware_version
        problem = rollback_problem(each, wanted, allow_downgrade=allow_downgrade)
        if problem is not None:
            raise problem
        path = image if image is not None else _built_image(out_dir, each)
        if image is not None and sign:   # e.g. a CI artifact, built without the key: signed here, on the PKI machine
            path, signed_now = signed_for_publish(image, key, out_dir, each.id)
            if signed_now:
                console.print(f"signed {image} for {each.id} with {key.private} (it came unsigned, e.g. from CI): "
                              f"{path}")
        images[each.id] = check_image(each, path, wanted, key, slot=slot_size(out_dir / firmware_dir(each.id)))
        announcements[each.id] = announcement(each, images[each.id], wanted, downgrade=downgrade)
    reach = publish_announcements(loaded, announcements, nodes=nodes, stage=images, out_dir=out_dir)
    for device_id, announced in announcements.items():
        assert announced is not None
        console.print(f"announced {announced.version}{_downgrade_note(loaded.device(device_id), downgrade)} to "
                      f"{device_id}: {announced.size:,} bytes, sha256 "
                      f"{announced.sha256[:16]}..., {announced.url}")
    _reached(loaded, reach, "announced on", out_dir,
             missing="devices that land there will not see it until this is run again and reaches them")
    console.print(f"the devices fetch it from `gen ota serve {spec}`; `gen ota status {spec}` shows what they run")


@ota_app.command("serve")
def serve(
    spec: Path = SPEC_ARGUMENT,
    port: Optional[int] = typer.Option(None, "--port", min=0, max=65535, metavar="PORT",
                                       help="Port (default: ota.port of the spec, which the devices dial)."),
    bind: str = typer.Option(LOCAL_ONLY, "--bind", metavar="ADDR",
                             help="Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the "
                                  "devices on your network)."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Serve the published images over HTTPS with the broker's certificate, to devices that present their own client
    certificate (not revoked): each gets only its own images. Runs in the foreground until Ctrl-C."""
    loaded = _with_ota(load_spec(spec))
    out_dir = Path(out) if out is not None else loaded.default_out_dir
    files = server_files(loaded, out_dir)
    assert loaded.ota_port is not None        # _with_ota
    server = open_server(files, bind=bind, port=loaded.ota_port if port is None else port,
                         log=lambda line: console.print(line))
    published = sum(1 for _ in files.images.glob("*/*.bin")) if files.images.is_dir() else 0
    console.print(f"serving {plural(published, 'published image')} from {files.images}/ on https://{bind}:"
                  f"{listening_port(server)}/ with {files.cert.name}; client certificates required, "
                  f"{files.crl} honoured (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopping the update server")
        raise
    finally:
        server.server_close()


@ota_app.command("status")
def status(spec: Path = SPEC_ARGUMENT, broker: Optional[str] = BROKER_OPTION,
           out: Optional[Path] = OUT_OPTION) -> None:
    """What each device last reported: online or not, the version it runs and from which slot, its last update
    (read from every node of a cluster, which keeps them per node)."""
    loaded = _with_ota(load_spec(spec))
    out_dir = Path(out) if out is not None else loaded.default_out_dir
    nodes = _nodes(spec, loaded, broker, out_dir)
    statuses, reach = node_statuses(loaded, nodes)
    table = Table(title="devices", title_justify="left")
    for column in ("device", "link", "version", "slot", "update", "detail"):
        table.add_column(column)
    for device_status in statuses:
        table.add_row(device_status.device_id, device_status.link, device_status.version or "-",
                      device_status.slot or "-", device_status.state or "-", device_status.detail or "")
    print_table(table)
    _reached(loaded, reach, "read from", out_dir,
             missing="what devices on those nodes said last may be missing or older above")


def register(app: typer.Typer) -> None:
    """Adds `gen ota publish|serve|status` to the `gen` app."""
    app.add_typer(ota_app, name="ota")
