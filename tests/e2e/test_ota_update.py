"""Updates over the air, end to end, in gen simulate's world: the firmware of each flavour built for the host, booted
through the simulated bootloader from its own flash, against the real broker and a real `gen ota serve` (Python ssl,
client certificates required). Each test is one scenario: an update that reaches the device and is kept; an image
that is refused (tampered, a wrong sha256, unsigned, for another chip, its download cut) while the old one keeps
running; an update that cannot reach the broker and is rolled back."""

from __future__ import annotations

import contextlib
import dataclasses
import re

import pytest

from generator.ota.status import collect_status
from ota_support import BROKEN, CONFIRM_TIMEOUT_S, UPDATE, cut_after, other_chip, ota_project, tampered
from simulate_support import CONNECTED, WAIT_S

pytestmark = pytest.mark.slow
FLAVOURS = ["espidf-ota", "arduino-ota"]


@pytest.fixture(params=FLAVOURS)
def ota(request, tmp_path_factory):
    return ota_project(request.param, tmp_path_factory)


def boots(device) -> list[str]:
    device.drain()
    return [line for line in device.lines if line.startswith("[sim] boot:")]


def assert_still_running_the_old_image(device, ota, broker) -> None:
    """Refused: the device never rebooted, and reports the version it ran."""
    assert len(boots(device)) == 1, device.output()
    assert device.process.process.poll() is None, device.output()
    device.wait_for(r"\[mqtt\] published \d+ bytes to .*/firmware")     # the "refused" report
    (status,) = collect_status(ota.spec, (broker.host, broker.port))
    assert (status.version, status.state) == ("1.2.0", "refused"), status


@pytest.fixture
def run(ota, tmp_path, start_broker):
    """`broker, device = run(server)`: the device flashed with 1.2.0, connected and listening for updates."""
    with contextlib.ExitStack() as stack:

        def start(server):
            broker = start_broker(ota.broker_dir)
            device = stack.enter_context(ota.device(tmp_path, broker, server))
            device.wait_for(r"\[ota\] listening for updates on ")
            return broker, device

        yield start


def test_an_update_reaches_the_device_which_runs_it_on_trial_and_keeps_it_once_it_reaches_the_broker(ota, run):
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, ota.stage(ota.image(UPDATE)))
        device.wait_for(rf"\[ota\] downloading {UPDATE}: 50%")
        device.wait_for(rf"\[ota\] {UPDATE} verified and installed in \w+; rebooting into it")
        trial = device.wait_for(rf"\[sim\] boot: (\w+), {UPDATE} \(pending verify: on trial\)")
        device.wait_for(CONNECTED)
        device.wait_for(rf"\[ota\] {UPDATE} reached the broker: confirmed, no rollback")
        # The announcement is retained: the new image hears it again and knows it runs it already.
        device.wait_for(rf"\[ota\] already running {UPDATE}; nothing to do")
        (status,) = collect_status(ota.spec, (broker.host, broker.port))
        assert (status.link, status.version, status.slot, status.state) == ("online", UPDATE, trial[1], "confirmed")
        assert any(f"200 {ota.device_spec.id} " in line for line in server.lines), server.lines


def test_a_tampered_image_is_refused_by_its_signature_and_the_old_one_keeps_running(ota, run):
    # One byte of the executable changed, the image's own checksum and SHA-256 made right again, announced with the
    # SHA-256 of what is served: only the signature can tell.
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, ota.stage(tampered(ota.image(UPDATE))))
        device.wait_for(rf"\[ota\] refused {UPDATE}: .*(signature does not verify|signature is for other contents)")
        assert_still_running_the_old_image(device, ota, broker)


def test_an_image_whose_sha256_is_not_the_announced_one_is_refused_before_the_switch(ota, run):
    with ota.server() as server:
        broker, device = run(server)
        announced = ota.stage(ota.image(UPDATE))
        ota.announce(broker, dataclasses.replace(announced, sha256="0" * 64))     # the URL still names the image
        device.wait_for(rf"\[ota\] downloading {UPDATE}: 100%")
        device.wait_for(rf"\[ota\] refused {UPDATE}: sha256 mismatch: {announced.sha256}")
        assert_still_running_the_old_image(device, ota, broker)


def test_an_unsigned_image_is_refused_and_the_old_one_keeps_running(ota, run):
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, ota.stage(ota.unsigned_image(UPDATE)))
        device.wait_for(rf"\[ota\] refused {UPDATE}: .*(does not verify \(not signed|is not a signed image)")
        assert_still_running_the_old_image(device, ota, broker)


def test_an_image_for_another_chip_is_refused_before_it_is_written(ota, run):
    chip = other_chip(ota.device_spec.chip)
    image = ota.signed(ota.unsigned_image(UPDATE, chip=chip), f"{UPDATE}-{chip}")
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, ota.stage(image))          # the announcement says the device's target: only the image tells
        device.wait_for(rf"\[ota\] refused {UPDATE}: the image is for another chip")
        assert_still_running_the_old_image(device, ota, broker)


def test_a_download_cut_halfway_is_refused_and_the_old_image_keeps_running(ota, run):
    with ota.server(cut_after(0.5)) as server:
        broker, device = run(server)
        announced = ota.stage(ota.image(UPDATE))
        ota.announce(broker, announced)
        cut = device.wait_for(rf"\[ota\] refused {UPDATE}: the download was cut at (\d+) of {announced.size} bytes")
        assert 0 < int(cut[1]) < announced.size
        assert_still_running_the_old_image(device, ota, broker)


def test_an_image_that_cannot_reach_the_broker_is_rolled_back_after_the_timeout(ota, run):
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, ota.stage(ota.image(BROKEN)))
        device.wait_for(rf"\[sim\] boot: \w+, {BROKEN} \(pending verify: on trial\)")
        device.wait_for(rf"\[ota\] {BROKEN} did not reach the broker within {CONFIRM_TIMEOUT_S} s: rolling back",
                        timeout=CONFIRM_TIMEOUT_S + WAIT_S)
        device.wait_for(r"\[sim\] boot: \w+, 1\.2\.0 \(valid\)")
        device.wait_for(CONNECTED)
        # Rolled back for good: the retained announcement of that image is not taken again.
        device.wait_for(rf"\[ota\] ignored: {BROKEN} was rolled back on this device")
        (status,) = collect_status(ota.spec, (broker.host, broker.port))
        assert (status.version, status.state) == ("1.2.0", "rolled_back"), status
        assert len(boots(device)) == 3, device.output()
        assert not re.search(rf"{BROKEN} reached the broker", device.output())
