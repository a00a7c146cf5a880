"""A device that makes its own key under `security: {nvs_encryption: true}` (ESP-IDF): its credentials partition
(gen_cred) is opened with nvs_flash_secure_init_partition and the keys of the scheme nvs_flash_init() uses, so the
key it makes and the certificates it gets are XTS-AES encrypted in its flash. The real firmware on the host runtime,
the real broker and the real provisioning service; the simulated flash is the journal the host runtime keeps
(templates/host/common/nvs_journal.h: 32-byte units, XTS-AES with their offset as the data unit)."""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from generator.firmware.nvs_image import CREDENTIALS_PARTITION
from generator.firmware.security import NVS_HMAC_KEY_ID, device_nvs_keys, nvs_keys_from_hmac
from generator.pki.layout import PkiLayout
from generator.pki.spec_identities import open_spec_pki
from provision_support import CONNECTED_AS_ITSELF, LIFECYCLE_WAIT_S, STEP, ProvisionWorld
from simulate_support import SimDevice

pytestmark = pytest.mark.slow
SECURITY = "security:\n  nvs_encryption: true\n"
SCHEMES = {"hmac": "esp32s3-espidf", "flash_encryption": "esp32-espidf"}
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----[^-]+-----END \1-----\n?")


def provisioned_world(tmp_path: Path, scheme: str = "hmac") -> ProvisionWorld:
    """A device with NVS encryption (its keys protected by `scheme`) after its first boot: it made its key, got its
    certificate and confirmed it."""
    world = ProvisionWorld.create(tmp_path, "espidf-mtls", target=SCHEMES[scheme], security=SECURITY)
    device = world.spec.devices[0]
    assert device.makes_own_key and device.security.nvs_encryption
    assert device.security.nvs_keys_from_hmac == (scheme == "hmac")
    with world.broker(), world.service():
        with world.device() as sim:
            sim.wait_for(r'NVS partition "nvs" is encrypted')
            sim.wait_for(r"\[cred\] no identity yet: first boot over the bootstrap listener")
            sim.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
    return world


def credentials_flash(world: ProvisionWorld) -> bytes:
    """The device's credentials partition as its simulated flash holds it."""
    return (world.flash_root / world.device_id / f"{CREDENTIALS_PARTITION}.journal").read_bytes()


def decrypted(flash: bytes, keys: tuple[bytes, bytes]) -> bytes:
    """The partition's records decrypted with (data key, tweak key), each 32-byte unit with its offset in the file
    as the data unit, as the host runtime writes them; other keys give garbage."""
    out = bytearray()
    at = 0
    while at + 4 <= len(flash):
        (size,) = struct.unpack_from("<I", flash, at)
        if size == 0 or size % 32 or at + 4 + size > len(flash):
            break
        for unit in range(at + 4, at + 4 + size, 32):
            decryptor = Cipher(algorithms.AES(keys[0] + keys[1]), modes.XTS(unit.to_bytes(16, "little"))).decryptor()
            out += decryptor.update(flash[unit:unit + 32]) + decryptor.finalize()
        at += 4 + size
    return bytes(out)


def device_keys(world: ProvisionWorld) -> tuple[bytes, bytes]:
    """The XTS keys the device derives (HMAC scheme) or reads from nvs_keys (flash encryption scheme)."""
    keys = device_nvs_keys(world.spec.devices[0], PkiLayout(world.spec.pki.dir).private)
    assert keys is not None
    return keys


@pytest.mark.parametrize("scheme", SCHEMES)
def test_its_credentials_partition_holds_no_plaintext_key_or_certificate(tmp_path, scheme):
    world = provisioned_world(tmp_path, scheme)
    live = world.assert_one_identity()
    flash = credentials_flash(world)
    assert flash, "the device wrote nothing to its credentials partition"
    assert b"-----BEGIN" not in flash and b"PRIVATE KEY" not in flash and b"CERTIFICATE" not in flash
    assert f"{live.serial:X}".encode() not in flash and world.device_id.encode() not in flash


@pytest.mark.parametrize("scheme", SCHEMES)
def test_decrypted_with_the_devices_keys_it_holds_the_key_and_certificate_it_connects_with(tmp_path, scheme):
    world = provisioned_world(tmp_path, scheme)
    live = world.assert_one_identity()
    plain = decrypted(credentials_flash(world), device_keys(world))
    pems: dict[bytes, list[bytes]] = {}
    for match in _PEM.finditer(plain):
        pems.setdefault(match.group(1), []).append(match.group(0))
    (key_pem,) = pems[b"EC PRIVATE KEY"]
    key = serialization.load_pem_private_key(key_pem, password=None)
    certificate = x509.load_pem_x509_certificate(pems[b"CERTIFICATE"][0])   # the chain: the device's, its CA's
    assert certificate.serial_number == live.serial
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()


def test_with_another_hmac_key_its_credentials_partition_decrypts_to_nothing(tmp_path):
    world = provisioned_world(tmp_path)
    flash = credentials_flash(world)
    assert b"PRIVATE KEY" in decrypted(flash, device_keys(world))       # with its own key it does
    other = decrypted(flash, nvs_keys_from_hmac(b"\x42" * 32))
    assert other and b"-----BEGIN" not in other and b"PRIVATE KEY" not in other


@pytest.mark.parametrize("scheme", SCHEMES)
def test_restarted_the_device_reads_its_key_back_and_connects_as_itself_again(tmp_path, scheme):
    world = provisioned_world(tmp_path, scheme)
    live = world.assert_one_identity()
    with world.broker(), world.service():
        with world.device() as sim:
            sim.wait_for(rf"\[cred\] identity: slot \d, certificate {live.serial:X}")
            sim.wait_for(CONNECTED_AS_ITSELF + world.device_id)
    assert not any("no identity yet" in line for line in sim.lines)
    assert world.assert_one_identity().serial == live.serial


def test_with_another_hmac_key_in_efuse_the_device_reads_nothing_and_never_connects(tmp_path):
    world = provisioned_world(tmp_path)
    wrong = tmp_path / "other-hmac-key.bin"
    wrong.write_bytes(b"\x42" * 32)
    with world.broker():
        run = world.device_run()
        environment = tuple(item for item in run.environment if item[0] != "GEN_SIM_EFUSE_HMAC_UP_KEY")
        run = dataclasses.replace(run, environment=environment + (
            ("GEN_SIM_EFUSE_HMAC_UP_KEY", f"{NVS_HMAC_KEY_ID}:{wrong}"),))
        with SimDevice.start(run) as sim:
            sim.wait_for(r"\[boot\] halted: the device settings are incomplete")
            summary = sim.stop()
    assert not summary.connected
    assert not any("identity: slot" in line for line in sim.lines)


def test_killed_in_the_middle_of_a_rotation_the_device_reads_its_encrypted_slots_back_and_finishes_it(tmp_path):
    world = provisioned_world(tmp_path)
    old_serial = world.assert_one_identity().serial
    with world.broker(), world.service():
        open_spec_pki(world.spec, create=False).request_rotation(world.device_id)
        with world.device() as sim:
            sim.wait_for(CONNECTED_AS_ITSELF, timeout=LIFECYCLE_WAIT_S)
            sim.wait_for(STEP.format(3), timeout=LIFECYCLE_WAIT_S)      # the new key and certificate written
            sim.kill()
        with world.device() as sim:                                     # power back
            sim.wait_for(r"\[cred\] (rotation in progress|identity: slot \d)")
            sim.wait_for(CONNECTED_AS_ITSELF + world.device_id, timeout=LIFECYCLE_WAIT_S)
            sim.wait_for(STEP.format(5), timeout=LIFECYCLE_WAIT_S)
    assert world.assert_one_identity().serial != old_serial
    flash = credentials_flash(world)
    assert b"PRIVATE KEY" not in flash and b"CERTIFICATE" not in flash
