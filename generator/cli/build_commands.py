"""`gen build`, `gen flash`, `gen monitor` and `gen ci github`."""

from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from generator.cli.progress import HEARTBEAT_S, ProgressLines
from generator.ci.credentials import ci_device_credentials, decode_bundle
from generator.ci.workflow import write_github_workflow
from generator.firmware_build.flashing import (
    FLASH_JSON,
    NVS_IMAGE,
    BuiltDevice,
    FlashImage,
    built_device,
    built_device_in,
    check_port_free,
    choose_port,
    flash_device,
    monitor_project_dir,
    pio_monitor_argv,
    read_flash_layout,
)
from generator.firmware_build.plan import BuildPlan, Image, plan_build
from generator.firmware_build.run import check_jobs, run_build
from generator.firmware_build.secure_flash import BURN_FLAG, DOWNLOAD_FLAG, RELEASE_FLAG
from generator.core.external_tools import require_esptool, require_platformio
from generator.cli.secure_flashing import flash_protected
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console, err_console, plural
from generator.core.errors import ToolError, UserError
from generator.core.files import SECRET_MODE, write_atomic
from generator.firmware.security import device_nvs_image, device_nvs_keys
from generator.pki.ota_signing import sign_image, signing_key
from generator.output.generate import generate, generate_without_pki
from generator.pki.spec_credentials import spec_credentials
from generator.output.layout import ARTIFACTS_DIR
from generator.output.manifest import read_manifest
from generator.pki.layout import PkiLayout
from generator.spec import Device, Spec, load_spec
from generator.spec.catalogue import load_catalogue
from generator.spec.source import SECRETS_FILE

PORT_OPTION = typer.Option(None, "--port", "-p", metavar="PORT",
                           help="Serial port (default: the only USB serial port present).")


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}", hint="give the file `gen ci github` wrote") from None


class BuildProgress:
    """A line per image on stderr while PlatformIO runs: its state, its devices, what PlatformIO is doing now. In a
    pipe or CI log (no live display), a line at least every 10 s says the same (generator.cli.progress)."""

    def __init__(self, plan: BuildPlan, console: Console = err_console, heartbeat_s: float = HEARTBEAT_S):
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.tasks: dict[str, TaskID] = {}
        self.plan = plan
        self.started: set[str] = set()
        self.lines = None if console.is_terminal else ProgressLines("gen build", console=console,
                                                                       interval=heartbeat_s)

    def __enter__(self) -> "BuildProgress":
        if self.lines is not None:
            self.lines.__enter__()
        self.progress.__enter__()
        for image in self.plan.images:
            self.tasks[image.key] = self.progress.add_task(f"waiting   {image.describe()}", total=1, start=False)
        return self

    def __exit__(self, *exc) -> None:
        for image in self.plan.images:
            if image.key not in self.started:  # another image failed first
                self.update(image, "skipped", True, "")
        if self.lines is not None:
            self.lines.__exit__(*exc)
        self.progress.__exit__(*exc)

    def update(self, image: Image, state: str, done: bool, detail: str) -> None:
        task = self.tasks[image.key]
        self.started.add(image.key)
        self.progress.start_task(task)
        doing = f"  {detail[:60]}" if detail else ""
        self.progress.update(task, description=f"{state:<9} {image.describe()}{doing}", completed=1 if done else 0)
        if self.lines is not None:
            self.lines.step(f"{state} {image.describe()}{doing}")


def build(
    spec: Path = SPEC_ARGUMENT,
    device: Optional[list[str]] = typer.Option(None, "--device", metavar="ID", help="Only this device (repeatable)."),
    jobs: int = typer.Option(1, "--jobs", "-j", metavar="N",
                             help="PlatformIO runs at once (each one already uses every core)."),
    out: Optional[Path] = OUT_OPTION,
    without_pki: bool = typer.Option(False, "--without-pki", help="Build as CI does: never open the PKI (issue and "
                                     "sign nothing): no broker files, no nvs.bin (gen flash makes it where the PKI "
                                     "lives); secrets.yaml is not needed when every device uses secrets: nvs."),
    credentials: Optional[Path] = typer.Option(None, "--credentials", metavar="FILE",
                                               help="With --without-pki: the bundle of the secrets: embed devices' "
                                                    "credentials that `gen ci github` writes."),
) -> None:
    """Generate, then build each distinct firmware image once with PlatformIO and collect every device's artifacts
    (firmware, bootloader, partitions, merged factory image, nvs.bin, flash.json) into OUT/artifacts/<id>/."""
    if credentials is not None and not without_pki:
        raise UserError("--credentials is for a build without the PKI", hint="add --without-pki (as CI does)")
    # Without the PKI and without secrets.yaml, !secret values are placeholders: fine for `secrets: nvs` images,
    # which hold none of them; an `embed` device then needs secrets.yaml and says so.
    no_secrets = without_pki and not (spec.parent / SECRETS_FILE).is_file()
    loaded = load_spec(spec, without_secrets=no_secrets)
    if no_secrets and any(d.secrets == "embed" for d in loaded.devices):
        loaded = load_spec(spec)
    out_dir = Path(out) if out is not None else loaded.default_out_dir
    for device_id in device or []:
        loaded.device(device_id)
    check_jobs(jobs)
    require_platformio()  # before generating: say what is missing at once
    require_esptool()
    if without_pki:
        bundle = decode_bundle(_read_text(credentials), str(credentials)) if credentials is not None else None
        generate_without_pki(loaded, out_dir, device_ids=device or None,
                             credentials=ci_device_credentials(loaded, bundle))
    else:
        generate(loaded, out_dir, device_ids=device or None)
    plan = plan_build(out_dir, read_manifest(out_dir), load_catalogue(), device_ids=device or None)
    sign: Callable[[Path, Path], None] | None = None
    if loaded.ota_port is not None and without_pki:
        err_console.print("gen: built without the PKI, the images are not signed: a device refuses them over the "
                          "air (and an ESP-IDF device flashed with one takes no update); where the PKI lives, "
                          f"`gen ota publish {spec} --device ID --image firmware.bin --sign` "
                          "signs one and announces it")
    elif loaded.ota_port is not None:
        sign = functools.partial(sign_image, key=signing_key(PkiLayout(loaded.pki.dir)))

    with BuildProgress(plan) as progress:
        result = run_build(plan, jobs=jobs, on_progress=progress.update, sign=sign)
    console.print(f"built {plural(len(result.images), 'image')} for {plural(len(result.artifacts), 'device')}: "
                  f"{out_dir / ARTIFACTS_DIR}/<id>/ (flash with `gen flash {spec} --device ID`)")


def flash(
    spec: Path = SPEC_ARGUMENT,
    device: str = typer.Option(..., "--device", metavar="ID", help="The device to flash."),
    port: Optional[str] = PORT_OPTION,
    method: str = typer.Option("esptool", "--method", metavar="METHOD",
                               help="esptool (flash.json) or pio (`pio run -t upload`)."),
    out: Optional[Path] = OUT_OPTION,
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", metavar="DIR",
                                             help="Flash these artifacts (e.g. a device's artifact downloaded from CI) "
                                                  "instead of OUT/artifacts/<id>/."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With security: print every espsecure, espefuse and "
                                 "esptool command and the eFuses they burn; run nothing."),
    burn_efuses: bool = typer.Option(False, BURN_FLAG, help="With security: allow burning the device's keys and "
                                     "eFuses (irreversible)."),
    release_irreversible: bool = typer.Option(False, RELEASE_FLAG, help="With security.flash_encryption: release: "
                                              "allow release mode (permanent: USB can never write plaintext again)."),
    disable_download_mode: bool = typer.Option(False, DOWNLOAD_FLAG, help="With security.rom_download_mode: "
                                               "disabled or secure: allow turning the UART ROM download mode off "
                                               "(permanent: no image over USB again)."),
) -> None:
    """Write a built device's images (and its nvs.bin) to the board on the serial port. An image built without the
    PKI (CI) gets the device's nvs.bin made here, where the PKI lives. With `security:` gen protects the device
    (keys and eFuses burned, images encrypted by the chip) and shows every step first."""
    loaded = load_spec(spec)
    chosen_device = loaded.device(device)
    out_dir = Path(out) if out is not None else loaded.default_out_dir
    if method not in ("esptool", "pio"):
        raise UserError(f"--method {method!r} is not esptool or pio")
    if method == "pio" and chosen_device.ota is not None:
        raise UserError(f"{device} takes updates over the air: `pio run -t upload` would write PlatformIO's unsigned "
                        "firmware.bin, and an unsigned image takes no signed update (ESP-IDF trusts the key of the "
                        "running image)", hint="use --method esptool (the default): it writes the signed image")
    if artifacts is not None:
        built = built_device_in(Path(artifacts), device, chosen_device.target)
    else:
        built = built_device(out_dir, read_manifest(out_dir), device, load_catalogue())
    _add_nvs_made_here(loaded, chosen_device, built)
    if chosen_device.security is not None and chosen_device.framework == "espidf":
        if method != "esptool":
            raise UserError(f"{device} has security:, which only --method esptool flashes")
        flags = {flag for flag, given in ((BURN_FLAG, burn_efuses), (RELEASE_FLAG, release_irreversible),
                                          (DOWNLOAD_FLAG, disable_download_mode)) if given}
        flash_protected(loaded, chosen_device, built, port=port, dry_run=dry_run, flags=flags)
        return
    if dry_run:
        raise UserError("--dry-run shows the plan of a device with security:; this one has none",
                        hint="run without --dry-run")
    esptool = require_esptool()
    pio = require_platformio() if method == "pio" else None
    chosen = choose_port(port)
    console.print(f"flashing {device} through {chosen} with {method}")
    flash_device(built, port=chosen, method=method, esptool=esptool, pio=pio,
                 echo=lambda line: console.print(line))
    console.print(f"flashed {device}; watch it with `gen monitor {spec} --device {device} --port {chosen}`")


def _add_nvs_made_here(spec: Spec, device: Device, built: BuiltDevice) -> None:
    """An image built without the PKI (CI) leaves the device's nvs.bin to be made where the PKI lives: here."""
    layout = read_flash_layout(built.artifacts_dir)
    if layout.nvs_offset is None or any(image.file == NVS_IMAGE for image in layout.images):
        return
    image = device_nvs_image(device, spec_credentials(spec).devices[device.id],
                             device_nvs_keys(device, PkiLayout(spec.pki.dir).private))
    write_atomic(built.artifacts_dir / NVS_IMAGE, image, mode=SECRET_MODE)
    images = tuple(sorted((*layout.images, FlashImage(layout.nvs_offset, NVS_IMAGE)), key=lambda i: i.offset))
    completed = dataclasses.replace(layout, images=images, nvs_offset=None)
    write_atomic(built.artifacts_dir / FLASH_JSON, (json.dumps(completed.to_json(), indent=2) + "\n").encode())
    console.print(f"made {device.id}'s nvs.bin here, from the PKI (the image was built without it)")


def monitor(
    spec: Path = SPEC_ARGUMENT,
    device: str = typer.Option(..., "--device", metavar="ID", help="The device whose serial output to show."),
    port: Optional[str] = PORT_OPTION,
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Show the device's serial output (`pio device monitor`) at its baud rate, decoding crash backtraces with the
    firmware built here when there is one. Needs only the port: the board may have been flashed elsewhere."""
    loaded = load_spec(spec)
    chosen_device = loaded.device(device)
    out_dir = Path(out) if out is not None else loaded.default_out_dir
    pio = require_platformio()
    chosen = choose_port(port)
    check_port_free(chosen)
    project_dir = monitor_project_dir(out_dir, device)
    returncode = subprocess.call(pio_monitor_argv(pio, project_dir, chosen_device.target, port=chosen))
    if returncode not in (0, 130):
        raise ToolError(f"`pio device monitor` on {chosen} stopped with exit {returncode}; its message is above.")


ci_app = typer.Typer(help="Continuous integration: workflows that build the fleet.", no_args_is_help=True)


@ci_app.command("github")
def ci_github(
    spec: Path = SPEC_ARGUMENT,
    repo: Optional[Path] = typer.Option(None, "--repo", metavar="DIR",
                                        help="Repository root (default: the git tree holding the spec)."),
    out: Optional[Path] = OUT_OPTION,
    install: Optional[str] = typer.Option(None, "--install", metavar="CMD",
                                          help="How CI installs gen (default: pip install esp32-mqtt-gen==<this "
                                               "version>, or `pip install .` in gen's own repo)."),
) -> None:
    """Write .github/workflows/<project>-firmware.yml: cache PlatformIO, build the fleet without the PKI (CI holds
    no CA key), upload each device. Devices with secrets: embed get a credentials bundle (OUT/ci/, 0600) to set as
    one repository secret; more than GitHub's 48 KB is an error that says how to split."""
    loaded = load_spec(spec)
    path, secrets, bundle = write_github_workflow(loaded, repo, out, install)
    console.print(f"wrote {path}")
    if secrets.all:
        console.print("set these repository secrets (Settings > Secrets and variables > Actions, or `gh secret set`):")
        for secret in secrets.all:
            console.print(f"  {secret.ci_secret}: {secret.description}")
    else:
        console.print("the workflow needs no secret: every device keeps its secrets in NVS, made where the PKI lives")
    if bundle is not None:
        console.print(f"{bundle} holds device keys and passwords (0600): set the secret from it, then delete it; "
                      "run `gen ci github` again after issuing or renewing a device certificate")


def register(app: typer.Typer) -> None:
    """Adds this concept's commands to the `gen` app."""
    app.command()(build)
    app.command()(flash)
    app.command()(monitor)
    app.add_typer(ci_app, name="ci")
