"""`gen broker config`, `gen broker up` and `gen broker apply`."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from generator.broker.apply import RESTART_SIGNAL, ApplyTarget, BrokerUpRecord, apply_broker_files, record_applied_keys
from generator.broker.install import BrokerReload
from generator.broker.rabbitmq_render import cluster_nodes, render_node_conf
from generator.broker.render import INSTALL_DIR, check_runnable_here, render_broker, render_mosquitto_conf
from generator.broker.runner import running_broker
from generator.cli.broker_cluster_commands import cluster_apply, cluster_up, write_cluster_files
from generator.cli.broker_override import dialled_address
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console, err_console
from generator.core.errors import ToolError, UserError
from generator.core.files import write_tree
from generator.output.layout import BROKER_DIR, BROKER_UP_RECORD
from generator.pki.credentials import ClientCredentials
from generator.pki.spec_credentials import spec_credentials
from generator.pki.spec_identities import open_spec_pki
from generator.spec import ADMIN_IDENTITY, load_spec

LOCAL_ONLY = "127.0.0.1"   # `gen broker up` is for trying the link on this machine
broker_app = typer.Typer(help="The Mosquitto broker side: print its config, or run it.", no_args_is_help=True)


@broker_app.command("config")
def config(spec: Path = SPEC_ARGUMENT) -> None:
    """Print the mosquitto.conf the spec produces (nothing is written; paths are where README.md installs them)."""
    loaded = load_spec(spec)
    if loaded.broker.clustered:      # each node's rabbitmq.conf
        for node in cluster_nodes(loaded):
            sys.stdout.write(render_node_conf(loaded, node).decode() + "\n")
        return
    sys.stdout.write(render_mosquitto_conf(loaded).decode())


@broker_app.command("up")
def up(
    spec: Path = SPEC_ARGUMENT,
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, metavar="PORT",
                                       help="TLS port to listen on (default: broker.port of the spec)."),
    bind: str = typer.Option(LOCAL_ONLY, "--bind", metavar="ADDR",
                             help="Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every "
                                  "interface)."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Generate OUT/broker/ and run the real mosquitto on it in the foreground until Ctrl-C."""
    loaded = load_spec(spec)
    if loaded.broker.clustered:
        cluster_up(loaded, out or loaded.default_out_dir)
        return
    if loaded.broker.external:
        check_runnable_here(loaded, Path("."))
    broker_dir = write_broker_files(loaded, out or loaded.default_out_dir)
    check_runnable_here(loaded, broker_dir)
    record_path = (out or loaded.default_out_dir) / BROKER_UP_RECORD
    if BrokerUpRecord.read(record_path) is not None:
        raise UserError(f"gen broker up already runs a broker for {loaded.path.name} (see {record_path})",
                        hint="stop it first (Ctrl-C in its terminal), or give another --out")
    with running_broker(broker_dir, port, bind_address=bind) as broker:
        where = f"{'every interface' if bind in ('0.0.0.0', '::') else bind}, port {broker.port} (TLS)"
        if broker.plaintext_port:
            where += f" and port {broker.plaintext_port} (plaintext)"
        if broker.provision_port:
            where += f" and port {broker.provision_port} (bootstrap: devices that make their own key)"
        restart = threading.Event()        # gen broker apply, when there is no plugin to end sessions with
        signal.signal(RESTART_SIGNAL, lambda _signum, _frame: restart.set())
        try:
            BrokerUpRecord.of(broker, bind).write(record_path)      # before it says it runs: apply finds it then
            record_applied_keys(broker.private_dir, open_spec_pki(loaded, create=False).entries())
            console.print(f"mosquitto {broker.version} running on {where} with {broker_dir}/ (Ctrl-C stops it)")
            console.print(f"its files: {broker.private_dir}/ (pid file {broker.pid_file}); after gen generate, "
                          f"`gen broker apply {spec}` installs the new ones into it")
            if not broker.ends_sessions:
                err_console.print("no dynamic-security plugin here: gen broker apply ends sessions by restarting it")
            with open(broker.log_path, "rb") as log:
                while True:
                    if restart.is_set():
                        restart.clear()
                        broker.restart()
                        console.print(f"restarted mosquitto for gen broker apply (pid {broker.process.pid})")
                    sys.stderr.write(log.read().decode(errors="replace"))
                    sys.stderr.flush()
                    if broker.process.poll() is not None:
                        raise ToolError(f"mosquitto exited with code {broker.process.returncode}",
                                        hint="see its log above")
                    time.sleep(0.2)
        except KeyboardInterrupt:
            console.print("stopping mosquitto")
            raise  # the broker stops as running_broker exits; gen exits 130
        finally:
            record_path.unlink(missing_ok=True)


@broker_app.command("apply")
def apply(
    spec: Path = SPEC_ARGUMENT,
    broker_dir: Optional[Path] = typer.Option(None, "--broker-dir", metavar="DIR",
                                              help=f"A broker you installed: the directory its config reads the "
                                                   f"files from ({INSTALL_DIR}). Default: the one gen broker up runs."),
    pid_file: Optional[Path] = typer.Option(None, "--broker-pid-file", metavar="FILE",
                                            help="With --broker-dir: reload it by SIGHUP to the pid in FILE."),
    reload_command: Optional[str] = typer.Option(None, "--reload-command", metavar="CMD",
                                                 help="With --broker-dir: reload it by running CMD, e.g. "
                                                      "'systemctl reload mosquitto'."),
    broker: Optional[str] = typer.Option(None, "--broker", metavar="HOST:PORT",
                                         help="With --broker-dir: where its device listener is (default: the "
                                              "spec's broker.host and port)."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Install the broker files the spec and PKI now make into the running broker, reload it, and end every live
    session of an identity that was revoked, renewed with a new key or removed (a reload alone leaves those
    connected)."""
    loaded = load_spec(spec)
    if loaded.broker.clustered:
        if broker_dir is not None or pid_file is not None or reload_command is not None or broker is not None:
            raise UserError("--broker-dir, --broker-pid-file, --reload-command and --broker are for Mosquitto",
                            hint="for installed RabbitMQ nodes follow OUT/broker/README.md (Revoke a device)")
        cluster_apply(loaded, out or loaded.default_out_dir)
        return
    if loaded.broker.external:
        check_runnable_here(loaded, Path("."))
    out_dir = out or loaded.default_out_dir
    if broker_dir is None:
        if pid_file is not None or reload_command is not None or broker is not None:
            raise UserError("--broker-pid-file, --reload-command and --broker go with --broker-dir",
                            hint=f"gen broker apply {spec} --broker-dir {INSTALL_DIR} --reload-command "
                                 "'systemctl reload mosquitto'")
        record = BrokerUpRecord.read(out_dir / BROKER_UP_RECORD)
        if record is None:
            raise UserError(f"no broker of gen broker up runs for {loaded.path.name} (no live "
                            f"{out_dir / BROKER_UP_RECORD})",
                            hint=f"start it (gen broker up {spec}), or for a broker you installed: --broker-dir "
                                 f"{INSTALL_DIR} --reload-command 'systemctl reload mosquitto'")
        target = ApplyTarget.broker_up(record)
    else:
        if (pid_file is None) == (reload_command is None):
            raise UserError("say how to reload the broker: --broker-pid-file FILE or --reload-command CMD",
                            hint="--reload-command 'systemctl reload mosquitto'")
        host, port = dialled_address(broker, loaded)
        target = ApplyTarget(directory=broker_dir, reload=BrokerReload(pid_file=pid_file, command=reload_command),
                             host=host, port=port)
    new_dir = write_broker_files(loaded, out_dir)
    store = open_spec_pki(loaded, create=False)
    applied = apply_broker_files(new_dir, target, entries=store.entries(), admin=admin_credentials(loaded, store),
                                 broker_name=loaded.broker.host, on_log=lambda line: console.print(line))
    if applied.conf_changed:
        err_console.print("mosquitto.conf changed: new listeners, ports and limits take effect only when the broker "
                          "restarts (gen broker up: Ctrl-C and start it again; installed: sudo systemctl restart "
                          "mosquitto)")
    console.print(f"ended {len(applied.ended)} live session(s)" if applied.ended else "no live session had to end")


def admin_credentials(spec, store) -> ClientCredentials:
    """gen broker apply's identity (issued by gen generate)."""
    identity = store.identity(f"client/{ADMIN_IDENTITY}")
    uses_password = any(device.uses_password for device in spec.devices)
    return ClientCredentials(name=ADMIN_IDENTITY, ca_pem=spec_credentials(spec).backend.ca_pem,
                             cert_pem=identity.cert_pem, key_pem=identity.key_pem,
                             password=store.password(ADMIN_IDENTITY) if uses_password else None)


def write_broker_files(spec, out_dir: Path) -> Path:
    """Creates or reuses the PKI and writes OUT/broker/ (what `gen generate` writes there); returns that dir."""
    if spec.broker.clustered:
        return write_cluster_files(spec, out_dir)
    rendered = render_broker(spec, spec_credentials(spec).broker)
    broker_dir = Path(out_dir) / BROKER_DIR
    write_tree(broker_dir, rendered.files, modes=rendered.modes)
    return broker_dir


def register(app: typer.Typer) -> None:
    """Adds `gen broker config|up|apply` to the `gen` app."""
    app.add_typer(broker_app, name="broker")
