"""An image built where the signing key is not (CI: `gen build --without-pki`) reaches the devices through the
machine that holds the PKI: `gen ota publish SPEC --device ID --image firmware.bin --sign` signs an unsigned app
image there with the project's key (espsecure, verified after), then checks and announces it like any other. An
image signed by another key is never re-signed: that is refused as before."""

from __future__ import annotations

from pathlib import Path

from generator.core.errors import UserError
from generator.core.files import PRIVATE_DIR_MODE, ensure_dir
from generator.core.app_image import ImageError
from generator.pki.ota_signing import SigningKey, sign_image, signature_blocks

SIGNED_DIR = "ota/signed"        # under OUT: images signed here for publishing (private: an embed image holds secrets)


def signed_for_publish(image: Path, key: SigningKey, out_dir: Path, device_id: str) -> tuple[Path, bool]:
    """(the image to check and announce, whether it was signed here now). Only an unsigned app image is signed."""
    try:
        blocks = signature_blocks(image.read_bytes())
    except (OSError, ImageError):
        return image, False          # check_image says what is wrong with it
    if blocks:
        return image, False
    if not key.private.is_file():
        raise UserError(f"{image} is not signed, and the project's signing key {key.private} is not on this machine",
                        hint="run gen ota publish where the PKI lives (the machine with pki/private/), which signs it")
    folder = Path(out_dir) / SIGNED_DIR
    ensure_dir(folder.parent, PRIVATE_DIR_MODE)
    ensure_dir(folder, PRIVATE_DIR_MODE)
    signed = folder / f"{device_id}-{image.stem}.signed.bin"
    sign_image(image, signed, key)
    return signed, True
