"""`gen broker config` and `gen broker up`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from generator.broker.render import check_runnable_here, render_broker, render_mosquitto_conf
from generator.broker.runner import running_broker
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console
from generator.core.errors import ToolError
from generator.core.files import write_tree
from generator.pki.spec_credentials import spec_credentials
from generator.output.layout import BROKER_DIR
from generator.spec import load_spec

LOCAL_ONLY = "127.0.0.1"   # `gen broker up` is for trying the link on this machine
broker_app = typer.Typer(help="The Mosquitto broker side: print its config, or run it.", no_args_is_help=True)


@broker_app.command("config")
def config(spec: Path = SPEC_ARGUMENT) -> None:
    """Print the mosquitto.conf the spec produces (nothing is written; paths are where README.md installs them)."""
    sys.stdout.write(render_mosquitto_conf(load_spec(spec)).decode())


@broker_app.command("up")
def up(
    spec: Path = SPEC_ARGUMENT,
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="TLS port to listen on (default: broker.port of the spec)."),
    bind: str = typer.Option(LOCAL_ONLY, "--bind", help="Address to listen on (default 127.0.0.1: this machine "
                                                         "only; 0.0.0.0 for every interface)."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Generate OUT/broker/ and run the real mosquitto on it in the foreground until Ctrl-C."""
    loaded = load_spec(spec)
    if loaded.broker.external:
        check_runnable_here(loaded, Path("."))
    broker_dir = write_broker_files(loaded, out or loaded.default_out_dir)
    check_runnable_here(loaded, broker_dir)
    with running_broker(broker_dir, port, bind_address=bind) as broker:
        where = f"{'every interface' if bind in ('0.0.0.0', '::') else bind}, port {broker.port} (TLS)"
        if broker.plaintext_port:
            where += f" and port {broker.plaintext_port} (plaintext)"
        console.print(f"mosquitto {broker.version} running on {where} with {broker_dir}/ (Ctrl-C stops it)")
        try:
            with open(broker.log_path, "rb") as log:
                while True:
                    sys.stderr.write(log.read().decode(errors="replace"))
                    sys.stderr.flush()
                    if broker.process.poll() is not None:
                        raise ToolError(f"mosquitto exited with code {broker.process.returncode}",
                                        hint="see its log above")
                    time.sleep(0.2)
        except KeyboardInterrupt:
            console.print("stopping mosquitto")
            raise  # the broker stops as running_broker exits; gen exits 130


def write_broker_files(spec, out_dir: Path) -> Path:
    """Creates or reuses the PKI and writes OUT/broker/ (what `gen generate` writes there); returns that dir."""
    rendered = render_broker(spec, spec_credentials(spec).broker)
    broker_dir = Path(out_dir) / BROKER_DIR
    write_tree(broker_dir, rendered.files, modes=rendered.modes)
    return broker_dir


def register(app: typer.Typer) -> None:
    """Adds `gen broker config|up` to the `gen` app."""
    app.add_typer(broker_app, name="broker")
