"""How fast the PKI issues device identities, next to two others doing the same work with the same key type:

    ours     `PkiStore.ensure_devices` for N new ids: key + cert + index entry, every file written atomically with
             its mode (0600 keys in 0700 folders), index.json written once (worker processes for big batches)
    floor    plain `cryptography` in one process: the same key type, a certificate with the same extensions signed
             by the same kind of CA, and the same two files per device (key 0600, cert 0644) written plainly
    recipe   the tutorials' openssl recipe, three processes per device (key, CSR, signed cert) with the same key type,
             run M times and scaled to N

Figures are CPU seconds over every process (the fair measure on a shared machine) and wall seconds, printed with
the ratios of the same run. Run it on tmpfs to measure the work rather than the disk:

    BENCH_DIR=/dev/shm .venv/bin/python bench/pki.py [N] [--recipe M] [--key-type ec-p256|rsa-2048]

PYTHONPATH=DIR measures the gen in DIR (another checkout) instead, for a before/after.

Targets (issue 22): EC issuing within 1.5x of the floor with its files (CPU); RSA batches use every core (wall).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))   # after PYTHONPATH: another checkout for a before/after

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from generator.pki.store import PkiStore  # noqa: E402

OPENSSL_KEY = {"ec-p256": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
               "rsa-2048": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measured(work) -> tuple[float, float]:   # type: ignore[no-untyped-def]
    started, cpu_started = time.perf_counter(), cpu_seconds()
    work()
    return cpu_seconds() - cpu_started, time.perf_counter() - started


def new_key(key_type: str):   # type: ignore[no-untyped-def]
    return ec.generate_private_key(ec.SECP256R1()) if key_type == "ec-p256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)


def bench_ours(root: Path, ids: list[str], key_type: str) -> tuple[float, float, float]:
    store = PkiStore.open(root / "pki", project="bench", key_type=key_type)
    cpu, wall = measured(lambda: store.ensure_devices(ids, key_type=key_type, validity_days=825))
    started = time.perf_counter()
    PkiStore.open(root / "pki", project="bench").ensure_devices(ids, key_type=key_type, validity_days=825)
    reuse = time.perf_counter() - started
    keys = list((root / "pki" / "private" / "devices").iterdir())
    assert len(keys) == len(ids) and all(k.stat().st_mode & 0o777 == 0o600 for k in keys[:: max(1, len(ids) // 50)])
    return cpu, wall, reuse


def bench_floor(root: Path, ids: list[str], key_type: str) -> tuple[float, float]:
    """The least any tool must do for the same result: key, certificate (same extensions), two files each."""
    ca_key = new_key(key_type)
    now = dt.datetime.now(dt.timezone.utc)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floor CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    keys, certs = root / "private" / "devices", root / "devices"
    keys.mkdir(parents=True, mode=0o700)
    certs.mkdir(parents=True)

    def issue_all() -> None:
        for name in ids:
            key = new_key(key_type)
            cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench")]))
                    .issuer_name(ca_cert.subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                   critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                    .add_extension(aki, critical=False)
                    .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:dev:{name}")]),
                                   critical=False)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                    .sign(ca_key, hashes.SHA256()))
            key_file = os.open(keys / f"{name}-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(key_file, "wb") as handle:
                handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            (certs / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    return measured(issue_all)


def bench_recipe(root: Path, count: int, key_type: str) -> tuple[float, float]:
    root.mkdir(parents=True)
    quiet = {"cwd": root, "check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["openssl", *OPENSSL_KEY[key_type], "-out", "ca.key"], **quiet)
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "365", "-key", "ca.key", "-out", "ca.crt",
                    "-subj", "/CN=recipe-ca"], **quiet)

    def issue_all() -> None:
        for i in range(count):
            name = f"esp32-{i:06d}"
            subprocess.run(["openssl", *OPENSSL_KEY[key_type], "-out", f"{name}.key"], **quiet)
            subprocess.run(["openssl", "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
                            "-subj", f"/CN={name}"], **quiet)
            subprocess.run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                            "-CAcreateserial", "-out", f"{name}.crt", "-days", "365"], **quiet)

    return measured(issue_all)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", nargs="?", type=int, default=10_000, help="device identities to issue")
    parser.add_argument("--recipe", type=int, default=None, help="recipe runs (default: min(N, 30))")
    parser.add_argument("--key-type", default="ec-p256", choices=("ec-p256", "rsa-2048"))
    args = parser.parse_args()
    recipe_count = args.recipe if args.recipe is not None else min(args.count, 30)
    ids = [f"esp32-{i:06d}" for i in range(args.count)]

    work = Path(tempfile.mkdtemp(prefix="bench-pki-", dir=os.environ.get("BENCH_DIR")))
    try:
        load_before = os.getloadavg()[0]
        ours_cpu, ours_wall, reuse = bench_ours(work / "ours", ids, args.key_type)
        floor_cpu, floor_wall = bench_floor(work / "floor", ids, args.key_type)
        recipe_cpu, recipe_wall = bench_recipe(work / "recipe", recipe_count, args.key_type) if recipe_count \
            else (float("nan"), float("nan"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    scale = args.count / recipe_count if recipe_count else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} at start, python {sys.version.split()[0]}, "
          f"dir {work.parent}; {args.count} {args.key_type} identities")
    print(f"{'':34}{'CPU s':>9}{'wall s':>9}{'identities/s':>14}")
    print(f"{'gen PKI (new)':34}{ours_cpu:>9.2f}{ours_wall:>9.2f}{args.count / ours_wall:>14.0f}")
    print(f"{'gen PKI (rerun, all reused)':34}{'':>9}{reuse:>9.2f}{args.count / reuse:>14.0f}")
    print(f"{'floor: cryptography + same files':34}{floor_cpu:>9.2f}{floor_wall:>9.2f}{args.count / floor_wall:>14.0f}")
    if recipe_count:
        print(f"{'openssl recipe (scaled from ' + str(recipe_count) + ')':34}{recipe_cpu * scale:>9.1f}"
              f"{recipe_wall * scale:>9.1f}{recipe_count / recipe_wall:>14.1f}")
    print(f"gen / floor: {ours_cpu / floor_cpu:.2f}x CPU, {ours_wall / floor_wall:.2f}x wall   "
          f"(target for EC: within 1.5x)")
    if recipe_count:
        print(f"recipe / gen: {recipe_cpu * scale / ours_cpu:.0f}x CPU, {recipe_wall * scale / ours_wall:.0f}x wall")


if __name__ == "__main__":
    main()
