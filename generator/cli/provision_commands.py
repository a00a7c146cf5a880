"""`gen provision serve SPEC` (the service that signs the CSRs of devices that make their own key) and
`gen provision allow SPEC --device ID` (let a device whose stored identity was erased provision once more)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from generator.cli.broker_override import broker_option, dialled_address
from generator.broker.install import BrokerReload
from generator.broker.render import INSTALL_DIR
from generator.cli.terminal import SPEC_ARGUMENT, console, err_console
from generator.core.errors import UserError
from generator.pki.spec_identities import open_spec_pki
from generator.provision.policy import MAX_UNCONFIRMED_ISSUES
from generator.provision.service import DEFAULT_BURST, DEFAULT_RATE, ProvisioningService, ServiceOptions
from generator.spec import load_spec

provision_app = typer.Typer(help="Devices that make their own key: sign their certificate requests over MQTT, and "
                                 "rotate their certificates in the field.", no_args_is_help=True)


@provision_app.command("serve")
def serve(
    spec: Path = SPEC_ARGUMENT,
    broker: Optional[str] = typer.Option(None, "--broker", metavar="HOST:PORT",
                                         help="Where to reach the broker's device listener (default: the spec's "
                                              "broker.host and port); its certificate must carry HOST."),
    broker_dir: Path = typer.Option(Path(str(INSTALL_DIR)), "--broker-dir", metavar="DIR",
                                    help="Where the broker reads its crl.pem and bootstrap.passwd (the service "
                                         "rewrites them after a rotation)."),
    pid_file: Optional[Path] = typer.Option(None, "--broker-pid-file", metavar="FILE",
                                            help="Reload the broker by SIGHUP to the pid in FILE."),
    reload_command: Optional[str] = typer.Option(None, "--reload-command", metavar="CMD",
                                                 help="Reload the broker by running CMD, e.g. "
                                                      "'systemctl reload mosquitto'."),
    rate: float = typer.Option(DEFAULT_RATE, "--rate", min=0.1, metavar="N",
                               help="Requests per second it handles at most."),
) -> None:
    """Run the provisioning service beside the broker until Ctrl-C: devices that make their own key send it a CSR
    over MQTT; it signs with the project's PKI, and revokes a device's old certificate once the new one connects."""
    loaded = load_spec(spec)
    if (pid_file is None) == (reload_command is None):
        raise UserError("say how the service reloads the broker after it revokes a certificate",
                        hint="--broker-pid-file /run/mosquitto/mosquitto.pid, or --reload-command "
                             "'systemctl reload mosquitto'")
    host, port = dialled_address(broker_option(spec, broker), loaded)
    if not broker_dir.is_dir():
        raise UserError(f"--broker-dir {broker_dir} is not a directory",
                        hint=f"the directory the broker's config names (installed: {INSTALL_DIR})")
    options = ServiceOptions(broker_host=host, broker_port=port, broker_dir=broker_dir,
                             reload=BrokerReload(pid_file=pid_file, command=reload_command), rate=rate,
                             burst=max(DEFAULT_BURST, int(rate * 2)))
    service = ProvisioningService(loaded, options, on_log=lambda line: err_console.print(line))
    stop = threading.Event()
    try:
        service.run(stop)
    except KeyboardInterrupt:
        stop.set()
        err_console.print("provision stopped")
        raise


@provision_app.command("allow")
def allow(spec: Path = SPEC_ARGUMENT,
          device: str = typer.Option(..., "--device", metavar="ID", help="The device whose stored identity was "
                                                                           "erased.")) -> None:
    """Let a device log in with its bootstrap password once more (its credentials partition was erased, so it
    lost its identity; its old identity must be revoked first), or let a device that got certificates it never
    confirmed ask for more."""
    loaded = load_spec(spec)
    if not loaded.device(device).makes_own_key:
        raise UserError(f"device {device!r} does not make its own key (key_origin: host): reflash it instead")
    store = open_spec_pki(loaded, create=False)
    standing = store.standing(device)
    if standing.unconfirmed_issues >= MAX_UNCONFIRMED_ISSUES:
        count = store.allow_reissues(device)
        console.print(f"device {device} got {count} certificates it never confirmed; it may ask for "
                      f"{MAX_UNCONFIRMED_ISSUES} more (if you did not expect them, revoke it: gen pki revoke {spec} "
                      f"{device})")
        if standing.live is not None or standing.pending is not None or not standing.ever_confirmed:
            return
    store.reopen_bootstrap(device)
    console.print(f"device {device} may provision again over the bootstrap listener; `gen provision serve` "
                  "opens its login at its next broker refresh (or run gen generate and reload the broker)")


def register(app: typer.Typer) -> None:
    """Adds `gen provision serve|allow` to the `gen` app."""
    app.add_typer(provision_app, name="provision")
