"""`gen pki init|import|list|show|issue|revoke|renew` and `gen inspect`.

Every `gen pki` command takes the spec first; the PKI is the one the spec names (`pki.dir`, default
`<spec dir>/pki/`). Passwords are printed in one place only: `gen pki show SPEC ID --secrets`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer
from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from rich import box
from rich.table import Table

from generator.broker.render import identity_command_lines
from generator.cli.terminal import SPEC_ARGUMENT, console, print_table, styled
from generator.firmware.security import nvs_image_protection, sdkconfig_protection
from generator.core.errors import UserError
from generator.core.files import write_atomic
from generator.pki import inspection
from generator.pki.ca import CaPassphrase
from generator.pki.issuing import EXPIRY_WARNING_DAYS
from generator.pki.spec_identities import ensure_spec_identities, open_spec_pki
from generator.pki.store import import_ca
from generator.spec import BACKEND_IDENTITY, load_spec

pki_app = typer.Typer(help="The project's private PKI: CA, broker, device and client certs, CRL.",
                      no_args_is_help=True)



def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _spec(path: Path):
    return load_spec(path)


def _store(spec, *, create: bool):
    return open_spec_pki(spec, create=create)


# ---------------------------------------------------------------------------------------------- commands


@pki_app.command("init")
def init(spec: Path = SPEC_ARGUMENT) -> None:
    """Create the PKI (root CA, issuing CA, empty CRL) if it does not exist yet; otherwise check it."""
    loaded = _spec(spec)
    existed = (Path(loaded.pki.dir) / "ca.pem").exists()
    store = _store(loaded, create=True)
    root = store.root_ca_cert
    console.print(f"{'PKI already exists' if existed else 'created the PKI'} in {store.layout.root}/")
    console.print(f"  root CA     {root.subject.rfc4514_string()}  (devices trust ca.pem)")
    console.print(f"  issuing CA  {store.issuing_ca_cert.subject.rfc4514_string()}  (signs broker, devices, CRL)")
    console.print(f"  valid until {root.not_valid_after_utc:%Y-%m-%d}; SHA-256 {root.fingerprint(SHA256()).hex(':')}")
    layout = store.layout
    for label, encrypted, clear in (("root key   ", layout.root_key_encrypted, layout.root_key_plain),
                                    ("issuing key", layout.issuing_key_encrypted, layout.issuing_key)):
        if encrypted.exists():
            console.print(f"  {label} {layout.rel(encrypted)}, encrypted with the passphrase in "
                          f"${loaded.pki.ca_passphrase_env}")
        elif clear.exists():
            console.print(f"  {label} {layout.rel(clear)}, unencrypted (0600); set pki.ca_passphrase_env in the "
                          "spec to encrypt it")
        elif label.startswith("root"):
            console.print(f"  {label} " + ("not here: the imported CA's root belongs to its owner" if store.imported
                                           else "offline (not in private/): fine, everyday issuing uses the "
                                                "issuing CA"))
    console.print(f"next: gen pki issue {spec}")


@pki_app.command("list")
def list_(spec: Path = SPEC_ARGUMENT,
          current: bool = typer.Option(False, "--current", help="Only each identity's current certificate, not its "
                                                                "history.")) -> None:
    """Every identity with its history: each certificate issued to it (serial, issued, not-after, days left, status,
    key), oldest first. Warns within 30 days of expiry."""
    store = _store(_spec(spec), create=False)
    now = _now()
    table = Table(title=f"PKI {store.layout.root}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("id", "role", "serial", "issued", "not after", "days left", "status", "key"):
        table.add_column(column, no_wrap=True)
    warnings = []
    for role, name, entries in store.history():
        shown = entries[-1:] if current else entries
        for number, entry in enumerate(shown):
            days = entry.days_left(now)
            latest = entry is entries[-1]
            style = None if entry.status == "valid" and latest else "dim"
            if latest and entry.status == "valid" and days < 0:
                style = "red"
                warnings.append(f"{role} {name} EXPIRED {-days} days ago: gen pki renew {spec} {name}")
            elif latest and entry.status == "valid" and days <= EXPIRY_WARNING_DAYS:
                style = "yellow"
                warnings.append(f"{role} {name} expires in {days} days: gen pki renew {spec} {name}")
            status = entry.status + (f" ({entry.reason})" if entry.status == "revoked" and entry.reason else "")
            if entry.status == "superseded" and days < 0:
                status = "superseded, expired"
            key = entry.key_type + (f" {entry.key_sha256[:8]}" if entry.key_sha256 else "")
            table.add_row(name if number == 0 else "", role if number == 0 else "", _short_serial(entry.serial),
                          f"{entry.issued_at:%Y-%m-%d}" if entry.issued_at else "", f"{entry.not_after:%Y-%m-%d}",
                          str(days), status, key, style=style)
    print_table(table)
    crl = _crl_next_update(store)
    if crl is not None:
        console.print(f"CRL next update {crl:%Y-%m-%d %H:%M} UTC (re-signed by `gen generate` before then)")
        if crl - now < dt.timedelta(days=7):
            warnings.append(f"the CRL {'is past' if crl < now else 'is close to'} its next update: Mosquitto "
                            f"rejects every client cert after it. Run gen generate {spec} and reload the broker")
    for warning in warnings:
        console.print(styled(("warning:", "yellow"), " ", warning))


@pki_app.command("show")
def show(spec: Path = SPEC_ARGUMENT,
         identity: str = typer.Argument(..., help="broker, a device id, a client name (e.g. backend)."),
         secrets: bool = typer.Option(False, "--secrets", help="Also print this identity's MQTT password.")) -> None:
    """One identity's certificate in plain words, its files, and (with --secrets) its password."""
    loaded = _spec(spec)
    store = _store(loaded, create=False)
    found = store.identity(identity)
    report = inspection.explain(found.cert_pem, str(found.cert_path), trust=[store.root_ca_cert,
                                                                           store.issuing_ca_cert], now=_now())
    _print_report(report)
    entry = store.entry(identity)
    console.print(f"status     {entry.status}" + (f" ({entry.reason}, {entry.revoked_at:%Y-%m-%d})"
                                                   if entry.status == "revoked" else ""))
    console.print(f"cert file  {found.cert_path}")
    console.print(f"key file   {found.key_path}" + ("" if found.key_pem else "  (MISSING)"))
    password = store.existing_password(found.name)
    if secrets:
        console.print(f"password   {password}" if password else "password   none (this identity has no password)")
    elif password:
        console.print("password   yes (print it with --secrets)")
    lines = identity_command_lines(loaded, found.name) if found.role == "client" else []
    if lines:
        console.print(f"try it (in {loaded.directory}):")
        for line in lines:
            console.print(f"  {line}")
        if len({line.split()[0] for line in lines}) > 1:
            console.print(f"  (each line logs in as {found.name}: the broker keeps one connection per identity, so "
                          f"the mosquitto_pub replaces a running mosquitto_sub; to watch and write at once, give the "
                          f"writer its own identity under clients:)")


@pki_app.command("issue")
def issue(spec: Path = SPEC_ARGUMENT,
          identity: Optional[str] = typer.Argument(None, help="Only this one: broker, a device id, or backend.")
          ) -> None:
    """Issue what the spec needs and is missing (broker, devices, backend, passwords, CRL); reuse the rest."""
    loaded = _spec(spec)
    if identity is None:
        store = _store(loaded, create=True)
        before = {entry.serial for entry in store.entries()}
        found = ensure_spec_identities(loaded)
        identities = [i for i in (found.broker, *found.devices.values(), found.backend, found.doctor) if i is not None]
    else:
        store = _store(loaded, create=True)
        before = {entry.serial for entry in store.entries()}
        devices = {device.id: device for device in loaded.devices}
        if identity == "broker":
            identities = [store.ensure_broker(loaded.broker.names, validity_days=loaded.pki.validity_days)]
        elif identity == BACKEND_IDENTITY or loaded.client(identity) is not None:
            identities = [store.ensure_client(identity, key_type=loaded.pki.key_type,
                                              validity_days=loaded.pki.validity_days)]
        elif identity in devices:
            device = devices[identity]
            identities = [store.ensure_device(device.id, key_type=device.pki.key_type,
                                              validity_days=device.pki.validity_days)]
        else:
            raise UserError(f"{identity!r} is not in {spec}",
                            hint=f"use broker, {BACKEND_IDENTITY}, a client of `clients:`, or one of: "
                                 f"{', '.join(devices) or '(no devices)'} (to add an identity, list it under "
                                 "`clients:` in the spec)")
    table = Table(title=f"PKI {store.layout.root}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("id", "role", "serial", "not after", ""):
        table.add_column(column, no_wrap=True)
    for found_identity in identities:
        table.add_row(found_identity.name, found_identity.role, _short_serial(found_identity.serial),
                      f"{found_identity.not_after:%Y-%m-%d}",
                      "reused" if found_identity.serial in before else "issued")
    print_table(table)


@pki_app.command("revoke")
def revoke(spec: Path = SPEC_ARGUMENT,
           identity: Optional[str] = typer.Argument(None, help="broker, a device id, or a client name."),
           key: Optional[Path] = typer.Option(None, "--key", metavar="FILE",
                                              help="Revoke by key instead: every certificate that certifies the key in "
                                                   "this file (a private or public key, or a certificate)."),
           reason: str = typer.Option("unspecified", "--reason", metavar="REASON",
                                      help="unspecified, key-compromise, superseded, cessation-of-operation, "
                                           "affiliation-changed.")) -> None:
    """Revoke every unexpired certificate of an identity (its current one and those before a renewal), or every one
    of a key (--key), and re-sign the CRL at once."""
    if (identity is None) == (key is None):
        raise UserError("say what to revoke: an identity, or --key FILE", hint=f"e.g. gen pki revoke {spec} sensor-01")
    store = _store(_spec(spec), create=False)
    if key is not None:
        revoked = store.revoke_key(inspection.public_key_of(_read_input(key, "--key"), str(key)), reason=reason)
    else:
        revoked = store.revoke(identity, reason=reason)
    for entry in revoked:
        console.print(f"revoked {entry.role} {entry.id} serial {entry.serial:X} (valid until "
                      f"{entry.not_after:%Y-%m-%d})")
    console.print(f"{store.layout.crl} re-signed with {len(revoked)} more serial{'s' if len(revoked) != 1 else ''}")
    console.print(f"next: gen generate {spec}, then gen broker apply {spec} (the broker gen broker up runs; for an "
                  f"installed one add --broker-dir /etc/mosquitto/gen --reload-command 'systemctl reload mosquitto'): "
                  "it installs the new CRL, reloads the broker and ends the revoked identity's live session, which a "
                  "reload alone leaves connected")


@pki_app.command("import")
def import_(spec: Path = SPEC_ARGUMENT,
            cert: Path = typer.Option(..., "--cert", metavar="FILE",
                                      help="The CA certificate to issue from (PEM or DER)."),
            key: Path = typer.Option(..., "--key", metavar="FILE",
                                     help="Its private key (PEM; an encrypted one opens with the spec's "
                                          "pki.ca_passphrase_env)."),
            chain: Optional[Path] = typer.Option(None, "--chain", metavar="FILE",
                                                 help="The certificates above it up to the self-signed root, when it "
                                                      "is not a root.")
            ) -> None:
    """Start the project's PKI from an existing CA (e.g. your organisation's intermediate): it signs the broker and
    device certificates and the CRL, and devices trust its root. Only where there is no PKI yet."""
    loaded = _spec(spec)
    env = loaded.pki.ca_passphrase_env
    store = import_ca(Path(loaded.pki.dir), project=loaded.project, cert_pem=_read_input(cert, "--cert"),
                      key_pem=_read_input(key, "--key"), chain_pem=_read_input(chain, "--chain") if chain else b"",
                      passphrase=CaPassphrase(variable=env) if env else None, cert_name=str(cert), key_name=str(key))
    console.print(f"created the PKI in {store.layout.root}/ from {cert}")
    console.print(f"  issuing CA  {store.issuing_ca_cert.subject.rfc4514_string()}  (signs broker, devices, CRL)")
    console.print(f"  root CA     {store.root_ca_cert.subject.rfc4514_string()}  (devices trust it: ca.pem)")
    kept = (store.layout.issuing_key_encrypted if store.layout.issuing_key_encrypted.exists()
            else store.layout.issuing_key)
    console.print(f"  its key     {store.layout.rel(kept)}" + (", encrypted" if kept.suffix == ".p12" else
                                                                 ", unencrypted (0600)"))
    console.print(f"next: gen generate {spec}")


@pki_app.command("renew")
def renew(spec: Path = SPEC_ARGUMENT,
          identity: str = typer.Argument(..., help="broker, a device id, or a client name."),
          new_key: bool = typer.Option(False, "--new-key", help="Generate a new key too (required after revoke or "
                                                                "to change the key type).")) -> None:
    """Issue a new certificate for an identity, for the same key or (--new-key) a new one."""
    loaded = _spec(spec)
    store = _store(loaded, create=False)
    devices = {device.id: device for device in loaded.devices}
    name = identity.split("/", 1)[-1]
    if name in devices:
        key_type, validity = devices[name].pki.key_type, devices[name].pki.validity_days
    else:
        key_type, validity = loaded.pki.key_type, loaded.pki.validity_days
    old = store.entry(identity)
    renewed = store.renew(identity, new_key=new_key, key_type=key_type if new_key else None,
                          validity_days=validity)
    console.print(f"renewed {renewed.role} {renewed.name}: serial {old.serial:X} -> {renewed.serial:X}, "
                  f"valid until {renewed.not_after:%Y-%m-%d}, {'new' if new_key else 'same'} key")
    console.print(f"next: gen generate {spec}" + (", then reflash the device" if renewed.role == "device" else ""))


@pki_app.command("rotate")
def rotate(spec: Path = SPEC_ARGUMENT,
           device: str = typer.Option(..., "--device", metavar="ID",
                                      help="A device that makes its own key (pki.key_origin: device).")) -> None:
    """Rotate a device's certificate in the field, without a cable: `gen provision serve` tells the device, which
    makes a fresh key and sends a CSR; its old certificate is revoked once the new one connects."""
    loaded = _spec(spec)
    if not loaded.device(device).makes_own_key:
        raise UserError(f"device {device!r} does not make its own key (key_origin: host), so it cannot rotate in "
                        "the field", hint=f"gen pki renew {spec} {device} --new-key, then reflash it")
    _store(loaded, create=False).request_rotation(device)
    console.print(f"rotation of {device} requested; `gen provision serve {spec}` tells the device (retained, so it "
                  "hears it when it next connects) and revokes the old certificate once the new one connects")


def inspect(
    file: Path = typer.Argument(..., help="A PEM or DER certificate, key, CSR or CRL."),
    ca: Optional[Path] = typer.Option(None, "--ca", metavar="FILE",
                                      help="A spec (its PKI's CAs) or a CA PEM: check the chain."),
    key: Optional[Path] = typer.Option(None, "--key", metavar="FILE",
                                       help="A private key: check that it belongs to the cert."),
    to: Optional[str] = typer.Option(None, "--to", metavar="FORMAT", help="Convert: der or pem (needs --out)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Where --to writes."),
) -> None:
    """Explain a certificate, key, CSR or CRL in plain words; check chain (--ca) and key (--key); convert."""
    data = _read_input(file, "file")
    if to is not None or out is not None:
        if to is None or out is None:
            raise UserError("--to and --out go together", hint="e.g. gen inspect cert.pem --to der --out cert.der")
        converted, secret = inspection.convert(data, str(file), to.lower())
        write_atomic(out, converted, mode=0o600 if secret else 0o644)
        console.print(f"wrote {out} ({to.upper()}{', mode 0600: it holds a private key' if secret else ''})")
        return
    protection = _build_protection(data)
    if protection is not None:
        console.print(f"{file}: {protection}", markup=False, highlight=False)
        return
    trust = _trust_from(ca) if ca is not None else []
    report = inspection.explain(data, str(file), trust=trust,
                              key=_read_input(key, "--key") if key is not None else None, now=_now())
    _print_report(report)
    if not trust:
        console.print("chain not checked: pass --ca SPEC (or a CA PEM) to check it against your project's CA")
    if report.errors:
        raise UserError("; ".join(report.errors),
                        hint="use the files from this project's pki/ directory (gen pki list SPEC shows them)")


# ---------------------------------------------------------------------------------------------- helpers


def _build_protection(data: bytes) -> str | None:
    """A device build's sdkconfig(.defaults) or nvs.bin: what protects the device at rest; None for anything else."""
    if data.lstrip().startswith((b"#", b"CONFIG_")) and b"CONFIG_" in data:
        return "protection at rest: " + sdkconfig_protection(data.decode("utf-8", "replace"))
    return nvs_image_protection(data)


def _read_input(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist")
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a directory, not a file")
    except PermissionError:
        raise UserError(f"cannot read {what} {path}: permission denied", hint="check its owner and mode")


def _trust_from(ca: Path) -> list:
    if ca.suffix.lower() in (".yaml", ".yml"):
        pki_dir = Path(_spec(ca).pki.dir)
        trust = []
        for name in ("ca.pem", "issuing-ca.pem"):
            trust += inspection.load_trust(_read_input(pki_dir / name, f"the project's {name}"), str(pki_dir / name))
        return trust
    return inspection.load_trust(_read_input(ca, "--ca"), str(ca))


def _short_serial(serial: int) -> str:
    """Enough of a serial to tell certs apart in a table (`gen pki show` prints it whole)."""
    return f"{serial:X}"[:12] + "…"


def _crl_next_update(store) -> dt.datetime | None:
    try:
        return x509.load_pem_x509_crl(store.layout.crl.read_bytes()).next_update_utc
    except (OSError, ValueError):
        return None


def _print_report(report) -> None:
    console.print(f"{report.source} ({report.encoding}, {len(report.objects)} "
                  f"object{'s' if len(report.objects) != 1 else ''})")
    for obj in report.objects:
        table = Table(title=obj.title, title_justify="left", show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for label, value in obj.facts:
            table.add_row(label, value)
        print_table(table)
        for warning in obj.warnings:
            console.print(styled("  ", ("warning:", "yellow"), " ", warning))
        for error in obj.errors:
            console.print(styled("  ", ("problem:", "red"), " ", error))


def register(app: typer.Typer) -> None:
    """Adds `gen pki ...` and `gen inspect` to the `gen` app."""
    app.add_typer(pki_app, name="pki")
    app.command("inspect")(inspect)
