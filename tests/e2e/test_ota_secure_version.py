"""The eFuse secure version (security.secure_version, CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK), end to end in gen
simulate's world: the ESP-IDF firmware on the host runtime, booted from its own flash by the simulated bootloader,
the real broker and a real `gen ota serve`. The chip's eFuse starts blank and rises to the secure version of the
image it confirms; an older image below it is refused in words before it is downloaded, even with a valid signed
downgrade permission, because the bootloader would never boot it."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt

import pytest

from generator.ota.status import collect_status
from generator.pki.layout import PkiLayout
from generator.pki.ota_signing import DOWNGRADE_VALID_DAYS, sign_downgrade, signing_key
from generator.simulate.bootloader import SimulatedFlash, read_efuse_secure_version
from ota_support import OLDER, UPDATE, ota_project
from simulate_support import CONNECTED

pytestmark = pytest.mark.slow

# 1.2.0 runs first; the update 1.3.0 fixes a vulnerability (secure version 2); 1.1.0 is older, secure version 1.
SECURE_VERSIONS = {OLDER: 1, "1.2.0": 1, UPDATE: 2}


@pytest.fixture
def ota(tmp_path_factory):
    return ota_project("espidf-ota", tmp_path_factory, secure_versions=SECURE_VERSIONS)


@pytest.fixture
def run(ota, tmp_path, start_broker):
    """`broker, device = run(server, version)`: a blank chip flashed with `version`, connected and listening."""
    with contextlib.ExitStack() as stack:

        def start(server, version: str):
            broker = start_broker(ota.broker_dir)
            device = stack.enter_context(ota.device(tmp_path, broker, server, version=version))
            device.wait_for(r"\[ota\] listening for updates on ")
            return broker, device

        yield start


def printed(device, text: str) -> bool:
    device.drain()
    return any(text in line for line in device.lines)


def efuse(ota, tmp_path) -> int:
    return read_efuse_secure_version(SimulatedFlash(tmp_path / "flash.bin", ota.device_spec.chip, anti_rollback=True))


def test_once_an_update_of_secure_version_2_is_confirmed_the_chips_efuse_holds_2(ota, run, tmp_path):
    with ota.server() as server:
        broker, device = run(server, "1.2.0")
        assert printed(device, "[ota] anti-rollback: this image's secure version 1, this chip's 1 (eFuse)")
        ota.announce(broker, ota.stage(ota.image(UPDATE)))
        device.wait_for(rf"\[sim\] boot: \w+, {UPDATE} \(pending verify: on trial\)")
        device.wait_for(r"\[ota\] anti-rollback: this image's secure version 2, this chip's 1 \(eFuse\)")
        device.wait_for(r"efuse: Anti-rollback is set\. eFuse field is updated\(2\)")    # by the confirmation
        device.wait_for(rf"\[ota\] {UPDATE} reached the broker: confirmed, no rollback")
        assert efuse(ota, tmp_path) == 2, device.output()


def test_an_older_image_below_the_chips_secure_version_is_refused_even_with_a_signed_downgrade_permission(
        ota, run, tmp_path):
    with ota.server() as server:
        broker, device = run(server, UPDATE)          # secure version 2, burnt into the blank eFuse at first boot
        assert printed(device, "[ota] anti-rollback: this image's secure version 2, this chip's 2 (eFuse)")
        staged = ota.stage(ota.image(OLDER))
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=DOWNGRADE_VALID_DAYS)
        permission = sign_downgrade(signing_key(PkiLayout(ota.spec.pki.dir)), ota.device_spec.id, staged.sha256,
                                    OLDER, from_version=UPDATE, not_after=until).text()
        ota.announce(broker, dataclasses.replace(staged, downgrade=permission))
        device.wait_for(rf"\[ota\] refused {OLDER}: its secure version 1 is below this chip's 2 \(eFuse\): it could "
                        rf"never boot; keeping {UPDATE}")
        device.wait_for(r"\[mqtt\] published \d+ bytes to .*/firmware")     # the "refused" report
        device.drain()
        assert sum(line.startswith("[sim] boot:") for line in device.lines) == 1, device.output()    # no reboot
        assert device.process.process.poll() is None, device.output()
        assert not any(f"downloading {OLDER}:" in line for line in device.lines), device.output()
        (status,) = collect_status(ota.spec, (broker.host, broker.port))
        assert (status.version, status.state) == (UPDATE, "refused"), status
        assert efuse(ota, tmp_path) == 2
