"""The project's OTA signing key and the signatures it makes: Secure Boot V2 RSA-3072 signature blocks, made and
checked by espsecure (esptool's), the scheme ESP-IDF's CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT verifies
(components/bootloader_support/src/secure_boot_v2/secure_boot_signatures_app.c) and the Arduino firmware checks
itself with mbedTLS.

    pki/private/ota-signing-key.pem   the private key, 0600 in the 0700 private/ folder; never printed, never copied
    pki/ota-signing.pem               its public half (in git, for CI and for anyone who checks an image)

A signed image is the app image padded with 0xFF to a 4 KB boundary, then one 4 KB signature sector: block 0 is
`<BBxx32s384sI384sI384s` (magic 0xE7, version 2, SHA-256 of everything before the sector, the key's n, e, r^-1 and
m' little-endian, the RSA-PSS signature little-endian), its CRC32, 16 zero bytes. The key a device trusts is named
by the SHA-256 of those four key fields (`espsecure digest-sbv2-public-key`).

A deliberate downgrade (`gen ota publish --allow-downgrade`) carries a permission made with the same key: its RSA-PSS
signature (SHA-256, MGF1 SHA-256, 32-byte salt) over `gen-ota-downgrade:v2:<device id>:<sha256 hex of the
image>:<version>:<from version>:<not after>` (`downgrade_message`), sent as `<not after>:<from version>:<base64
signature>` (`DowngradePermission`). The firmware verifies it with the key's public half (gen_link's ota_common.h),
so a permission holds for one device and one image only, only while that device runs `from version` (the spec's
firmware.version when it was made: once the fleet has moved on, a captured announcement replayed later rolls nothing
back), and only until `not after` (Unix seconds, UTC; 7 days by default, at most 365, as the device's SNTP clock
tells). Only the holder of the private key, on the PKI machine, can make one.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import logging
import os
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from generator.core.app_image import SECTOR_SIZE, ImageError, read_image
from generator.core.errors import ToolError, UserError
from generator.core.external_tools import require_espsecure
from generator.core.files import PRIVATE_DIR_MODE, PUBLIC_MODE, SECRET_MODE, create_file, ensure_dir
from generator.pki.layout import PkiLayout

log = logging.getLogger(__name__)   # what the user must know (the CLI prints it to stderr)
KEY_BITS = 3072                     # the RSA scheme's only size (SECURE_SIGNED_APPS_RSA_SCHEME)
SIGNATURE_BLOCK = struct.Struct("<BBxx32s384sI384sI384sI16x")
SIGNATURE_MAGIC, SIGNATURE_VERSION_RSA = 0xE7, 0x02
_CRC_COVERS = SIGNATURE_BLOCK.size - 4 - 16          # the CRC32 covers the block up to itself
ESPSECURE_TIMEOUT_S = 60


@dataclass(frozen=True)
class SigningKey:
    """Where the project's signing key lies; the private half is read only by espsecure, through its path."""

    private: Path
    public: Path

    def public_pem(self) -> bytes:
        return self.public.read_bytes()

    def digest(self) -> bytes:
        return key_digest(self.public_pem())


def signing_key(layout: PkiLayout) -> SigningKey:
    return SigningKey(layout.ota_signing_key, layout.ota_signing_public)


def ensure_signing_key(layout: PkiLayout) -> SigningKey:
    """The project's signing key: the existing one (never replaced), or a new RSA-3072 key made here. The private key
    is written 0600 in the 0700 private/ folder (espsecure's own generate-signing-key writes 0644)."""
    key = signing_key(layout)
    if key.private.is_file():
        _check_private(key.private)
        if not key.public.is_file():         # the public half is derived again, never the private one
            _write_new(key.public, _public_pem(key.private), PUBLIC_MODE)
        return key
    if key.public.is_file():
        raise UserError(f"{key.public} exists but its private key {key.private} does not: images signed now would "
                        "not be trusted by the devices, which trust only the key they were flashed with",
                        hint=f"restore {key.private} from your backup (or, to start over with a new key and flash "
                             f"every device by USB again, remove {key.public})")
    ensure_dir(key.private.parent, PRIVATE_DIR_MODE)
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    _write_new(key.private, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), SECRET_MODE)
    _write_new(key.public, private.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo),
               PUBLIC_MODE)
    log.warning(f"created the project's OTA signing key {key.private}: back it up now (offline, with pki/private/). "
                "Every device trusts only this key; if it is lost, each device needs a cable to take a new one")
    return key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """A key file that did not exist: never one that does (a key is never replaced)."""
    if not create_file(path, data, mode=mode):
        raise FileExistsError(errno.EEXIST, "exists already", str(path))


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(f"{path} is readable by others (mode {mode:o}); it signs the firmware every device runs",
                        hint=f"chmod 600 {path}")


def _public_pem(private_path: Path) -> bytes:
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def key_digest(public_pem: bytes) -> bytes:
    """SHA-256 of the key fields as a V2 signature block carries them (what `espsecure digest-sbv2-public-key`
    prints): the key a device trusts."""
    public = serialization.load_pem_public_key(public_pem)
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size != KEY_BITS:
        raise UserError("the OTA signing key is not an RSA-3072 key", hint="the RSA scheme of Secure Boot V2 needs one")
    numbers = public.public_numbers()
    size = KEY_BITS // 8
    m_dash = (-pow(numbers.n, -1, 1 << 32)) & 0xFFFFFFFF
    r_inverse = (1 << (KEY_BITS * 2)) % numbers.n
    fields = struct.pack("<384sI384sI", numbers.n.to_bytes(size, "big")[::-1], numbers.e,
                         r_inverse.to_bytes(size, "big")[::-1], m_dash)
    return hashlib.sha256(fields).digest()


# ---------------------------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class SignatureBlock:
    image_digest: bytes
    key_digest: bytes


def signature_blocks(data: bytes) -> tuple[SignatureBlock, ...]:
    """The valid V2 signature blocks (magic, version, CRC) in the sector after the image; () for an unsigned one.
    Raises ImageError when `data` is not an app image."""
    image = read_image(data)
    sector = data[image.signed_length:image.signed_length + SECTOR_SIZE]
    blocks = []
    for index in range(3):
        raw = sector[index * SIGNATURE_BLOCK.size:(index + 1) * SIGNATURE_BLOCK.size]
        if len(raw) < SIGNATURE_BLOCK.size:
            break
        magic, version, digest, n, e, rinv, m_dash, _signature, crc = SIGNATURE_BLOCK.unpack(raw)
        if magic != SIGNATURE_MAGIC or version != SIGNATURE_VERSION_RSA or crc != zlib.crc32(raw[:_CRC_COVERS]):
            continue
        blocks.append(SignatureBlock(digest, hashlib.sha256(struct.pack("<384sI384sI", n, e, rinv, m_dash)).digest()))
    return tuple(blocks)


def _espsecure(args: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([require_espsecure(), *args], capture_output=True, text=True,
                              timeout=ESPSECURE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolError(f"espsecure did not finish {what} within {ESPSECURE_TIMEOUT_S} s") from None
    return done


def sign_image(unsigned: Path, signed: Path, key: SigningKey) -> None:
    """`espsecure sign-data --version 2` of an app image, then `verify-signature` with the public key: `signed` is
    written only when both succeed."""
    _check_private(key.private)
    try:
        read_image(unsigned.read_bytes())
    except ImageError as error:
        raise ToolError(f"{unsigned} is not an app image espsecure could sign: {error}") from None
    with tempfile.TemporaryDirectory(prefix="gen-sign-", dir=signed.parent) as work:
        output = Path(work) / signed.name
        done = _espsecure(["sign-data", "--version", "2", "--keyfile", str(key.private), "--output", str(output),
                           str(unsigned)], f"signing {unsigned}")
        if done.returncode != 0 or not output.is_file():
            raise ToolError(f"espsecure sign-data failed (exit {done.returncode}) for {unsigned}: "
                            f"{_last_line(done)}")
        problem = signature_problem(output, key)
        if problem is not None:
            raise ToolError(f"espsecure signed {unsigned}, but the signature does not verify: {problem}")
        os.replace(output, signed)


def signature_problem(image: Path, key: SigningKey) -> str | None:
    """Why `image` is not signed by the project's key (in words), or None when `espsecure verify-signature` accepts
    it."""
    try:
        blocks = signature_blocks(image.read_bytes())
    except ImageError as error:
        return f"it is not an app image ({error})"
    if not blocks:
        return "it carries no signature (build it with `gen build`, which signs it)"
    if all(block.key_digest != key.digest() for block in blocks):
        return "it is signed by another key than this project's (pki/ota-signing.pem)"
    done = _espsecure(["verify-signature", "--version", "2", "--keyfile", str(key.public), str(image)],
                      f"verifying {image}")
    if done.returncode != 0:
        return f"its signature does not verify ({_last_line(done)}): the image was altered after signing"
    return None


# ---------------------------------------------------------------------------------------------- downgrade permissions

DOWNGRADE_MESSAGE_PREFIX = "gen-ota-downgrade:v2:"
DOWNGRADE_PADDING = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)   # the firmware expects 32
DOWNGRADE_VALID_DAYS = 7           # by default: a fleet that comes online over a week still takes it
DOWNGRADE_VALID_DAYS_MAX = 365     # at most (the device compares not-after with its SNTP clock)


def downgrade_message(device_id: str, sha256: str, version: str, from_version: str, not_after: int) -> bytes:
    """What a downgrade permission signs: this device, this image, this version, for a device running
    `from_version`, until `not_after` (Unix seconds, UTC)."""
    return f"{DOWNGRADE_MESSAGE_PREFIX}{device_id}:{sha256}:{version}:{from_version}:{not_after}".encode()


@dataclass(frozen=True)
class DowngradePermission:
    """A signed downgrade permission as the announcement's "downgrade" carries it:
    `<not after>:<from version>:<base64 signature>` (a version holds no ':', firmware_version.VERSION_PATTERN)."""

    not_after: int             # Unix seconds, UTC: the device refuses it once its clock is past this
    from_version: str          # the version the device must be running for it to apply
    signature: str             # base64 of the RSA-PSS signature of downgrade_message

    def text(self) -> str:
        return f"{self.not_after}:{self.from_version}:{self.signature}"

    @property
    def expires(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.not_after, dt.timezone.utc)


def sign_downgrade(key: SigningKey, device_id: str, sha256: str, version: str, *, from_version: str,
                   not_after: dt.datetime) -> DowngradePermission:
    """The permission for `device_id`, while it runs `from_version` and until `not_after`, to install the image
    `sha256` of `version` though it is older: the RSA-PSS signature by the project's private signing key (needed
    here: it never leaves the PKI machine, so a downgrade is announced from there)."""
    if not key.private.is_file():
        raise UserError(f"a downgrade must be signed with the project's OTA signing key, and {key.private} is not here",
                        hint="run `gen ota publish --allow-downgrade` where the PKI lives")
    _check_private(key.private)
    private = serialization.load_pem_private_key(key.private.read_bytes(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey) or key_digest(_public_pem(key.private)) != key.digest():
        raise UserError(f"{key.private} is not the private half of {key.public}, the key the devices trust",
                        hint=f"restore the private key that belongs to {key.public}")
    assert ":" not in version + from_version, "a firmware version holds no ':' (firmware_version.VERSION_PATTERN)"
    seconds = int(not_after.timestamp())
    message = downgrade_message(device_id, sha256, version, from_version, seconds)
    signature = private.sign(message, DOWNGRADE_PADDING, hashes.SHA256())
    return DowngradePermission(seconds, from_version, base64.b64encode(signature).decode("ascii"))


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
