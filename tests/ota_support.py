"""What the OTA tests share: an OTA example generated once per session with three firmwares built for the host from
specs side by side (one PKI, one project): the running one (1.2.0), an update (1.3.0) and an update that cannot reach
the broker (1.3.1, its broker port wrong); their signed app images; a real `gen ota serve` on a free port; and
announcements sent as gen's OTA identity (bypassing `gen ota publish`'s own checks, as a fooled backend would).

    ota = ota_project("espidf-ota", tmp_path_factory)
    with ota.device(tmp_path, broker, server) as device:      # flashed with 1.2.0, booted through the bootloader
        ota.announce(broker, ota.image("1.3.0"))
        device.wait_for(r"\\[ota\\] .* confirmed")
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from generator.broker.runner import RunningBroker
from generator.ota.announce import Announcement, announcement, publish_announcements, stage_image
from generator.core.app_image import CHIP_IDS, HEADER, read_image
from generator.ota.serve import OtaServer, listening_port, open_server, server_files
from generator.pki.ota_signing import sign_image, signing_key
from generator.output.generate import generate
from generator.output.layout import firmware_dir
from generator.output.manifest import read_manifest
from generator.pki.layout import PkiLayout
from generator.simulate.bootloader import SimulatedFlash, pack_host_image, write_flash
from generator.simulate.device_runs import BrokerAddress, build_secure_version, nvs_images, plan_runs
from generator.simulate.run import compile_devices
from generator.spec import Device, Spec, load_spec
from simulate_support import EXAMPLES_DIR, SimDevice

CONFIRM_TIMEOUT_S = 10        # what a trial image gets in these tests (ota.confirm_timeout's minimum)
UPDATE, BROKEN = "1.3.0", "1.3.1"
OLDER = "1.1.0"                # what a rollback attack would install


@dataclass
class OtaProject:
    spec: Spec                           # the running firmware, 1.2.0
    out_dir: Path
    binaries: dict[str, Path]            # version -> host executable
    images: dict[str, Path] = dataclasses.field(default_factory=dict)   # version -> signed app image

    @property
    def device_spec(self) -> Device:
        return self.spec.devices[0]

    @property
    def broker_dir(self) -> Path:
        return self.out_dir / "broker"

    def secure_version(self, version: str) -> int | None:
        """The secure version the build of `version` is made with (None: no anti-rollback)."""
        return build_secure_version(self.out_dir.parent / f"build-{version}", self.device_spec.id)

    def image(self, version: str) -> bytes:
        """The signed app image of the host build of `version` (with its build's secure version)."""
        if version not in self.images:
            work = self.out_dir.parent / "images"
            work.mkdir(exist_ok=True)
            unsigned = work / f"{version}.unsigned.bin"
            unsigned.write_bytes(pack_host_image(self.binaries[version], chip=self.device_spec.chip, version=version,
                                                 secure_version=self.secure_version(version) or 0))
            self.images[version] = work / f"{version}.bin"
            sign_image(unsigned, self.images[version], signing_key(PkiLayout(self.spec.pki.dir)))
        return self.images[version].read_bytes()

    def unsigned_image(self, version: str, chip: str | None = None) -> bytes:
        return pack_host_image(self.binaries[version], chip=chip or self.device_spec.chip, version=version)

    def signed(self, image: bytes, name: str) -> bytes:
        work = self.out_dir.parent / "images"
        (work / f"{name}.unsigned.bin").write_bytes(image)
        sign_image(work / f"{name}.unsigned.bin", work / f"{name}.bin", signing_key(PkiLayout(self.spec.pki.dir)))
        return (work / f"{name}.bin").read_bytes()

    @contextlib.contextmanager
    def server(self, server_class: type[OtaServer] = OtaServer) -> Iterator[OtaServer]:
        """A real `gen ota serve` (optionally with a server class that misbehaves) on a free 127.0.0.1 port."""
        lines: list[str] = []
        server = open_server(server_files(self.spec, self.out_dir), bind="127.0.0.1", port=0, log=lines.append)
        if server_class is not OtaServer:
            server.__class__ = server_class
        server.lines = lines     # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    @contextlib.contextmanager
    def device(self, flash_dir: Path, broker: RunningBroker, server: OtaServer,
               environment: dict[str, str] | None = None, version: str | None = None) -> Iterator[SimDevice]:
        """The device, flashed by USB with 1.2.0 (or `version`; a fresh flash of its own, a blank chip), running
        against the broker and fetching its updates from `server` (with `environment` added to its own, e.g. a
        shifted clock)."""
        device = self.device_spec
        version = version or device.firmware_version
        flash = SimulatedFlash(flash_dir / "flash.bin", device.chip,
                               anti_rollback=self.secure_version(version) is not None)
        partitions = (self.out_dir / firmware_dir(device.id) / "partitions.csv").read_text()
        write_flash(flash.path, partitions_csv=partitions, app_image=self.image(version))
        (run,) = plan_runs(self.spec, [device.id], {device.id: self.binaries[version]},
                           nvs_images(self.out_dir, read_manifest(self.out_dir)),
                           BrokerAddress(broker.host, broker.port), flashes={device.id: flash},
                           ota_server=BrokerAddress("127.0.0.1", listening_port(server)))
        run = dataclasses.replace(run, environment=run.environment + tuple((environment or {}).items()))
        with SimDevice.start(run) as running:
            yield running

    def stage(self, image: bytes) -> Announcement:
        """`image` put where the server serves it, and what announcing it truthfully says."""
        stage_image(self.out_dir, self.device_spec, image)
        return announcement(self.device_spec, image, _version(image))

    def announce(self, broker: RunningBroker, announced: Announcement) -> None:
        publish_announcements(self.spec, {self.device_spec.id: announced}, (broker.host, broker.port))


def _version(image: bytes) -> str:
    return read_image(image).version


def rehashed(image: bytes, layout: bytes) -> bytes:
    """`image` (a changed copy of `layout`) with its checksum and appended SHA-256 made right again, as an attacker
    would: only a signature can tell it was altered."""
    parsed = read_image(layout)
    checksum_at = parsed.end - 32 - 1
    body = bytearray(image[:checksum_at])
    position, checksum = HEADER.size, 0xEF
    for _ in parsed.segments:
        length = int.from_bytes(body[position + 4:position + 8], "little")
        for byte in body[position + 8:position + 8 + length]:
            checksum ^= byte
        position += 8 + length
    body.append(checksum)
    body += hashlib.sha256(body).digest()
    return bytes(body) + image[parsed.end:]


def tampered(image: bytes) -> bytes:
    """One byte of the executable flipped, the image's own hash made right again, the signature sector kept."""
    altered = bytearray(image)
    altered[HEADER.size + 8 + 256 + 8 + 100] ^= 0x01     # in segment 1 (the executable), past its ELF header
    result = rehashed(bytes(altered), image)
    read_image(result)                                   # intact as an image; only its signature is wrong now
    return result


def cut_after(fraction: float) -> type[OtaServer]:
    """A server that announces the whole Content-Length, sends `fraction` of the image, and hangs up."""

    class CuttingServer(OtaServer):
        def send_image(self, handler, image, size):
            data = image.read(int(size * fraction))
            handler.wfile.write(data)
            handler.wfile.flush()
            handler.connection.close()
            return len(data)

    return CuttingServer


_projects: dict[tuple[str, Path, tuple], OtaProject] = {}


def _with_secure_version(text: str, secure_version: int | None) -> str:
    """The spec with app anti-rollback at `secure_version` (nothing else of `security:`), or as it is."""
    if secure_version is None:
        return text
    return text + f"security:\n  flash_encryption: off\n  secure_version: {secure_version}\n"


def ota_project(name: str, tmp_path_factory, secure_versions: dict[str, int] | None = None) -> OtaProject:
    """projects/examples/<name>, its confirm timeout shortened, with 1.2.0, 1.3.0, a 1.3.1 that dials a wrong
    broker port and an older 1.1.0, each compiled for the host (once per session: the host build cache keeps them
    across runs). With `secure_versions` (version -> security.secure_version): only those versions, each built with
    app anti-rollback at its secure version."""
    root = tmp_path_factory.getbasetemp() / "ota"
    key = (name, root, tuple(sorted((secure_versions or {}).items())))
    if key not in _projects:
        directory = root / (name if not secure_versions else f"{name}-anti-rollback")
        shutil.copytree(EXAMPLES_DIR / name, directory, ignore=shutil.ignore_patterns("pki", "build"))
        text = (directory / "device.yaml").read_text()
        text = re.sub(r"confirm_timeout: \d+", f"confirm_timeout: {CONFIRM_TIMEOUT_S}", text)
        (directory / "device.yaml").write_text(text)
        variants = {"1.2.0": ("device.yaml", text),
                    UPDATE: ("update.yaml", text.replace("version: 1.2.0", f"version: {UPDATE}")),
                    BROKEN: ("broken.yaml", text.replace("version: 1.2.0", f"version: {BROKEN}")
                             .replace("port: 8883", "port: 9")),
                    OLDER: ("older.yaml", text.replace("version: 1.2.0", f"version: {OLDER}"))}
        if secure_versions:
            variants = {version: (file_name, _with_secure_version(content, secure_versions[version]))
                        for version, (file_name, content) in variants.items() if version in secure_versions}
        binaries = {}
        spec = None
        for version, (file_name, content) in variants.items():
            (directory / file_name).write_text(content)
            variant = load_spec(directory / file_name)
            out = directory / f"build-{version}"
            generate(variant, out)
            device_id = variant.devices[0].id
            binaries[version] = compile_devices(variant, out, [device_id], cache_dir=None)[device_id]
            if version == "1.2.0":
                spec = variant
        assert spec is not None
        _projects[key] = OtaProject(spec=spec, out_dir=directory / "build-1.2.0", binaries=binaries)
    return _projects[key]


def other_chip(chip: str) -> str:
    return next(other for other in ("esp32c3", "esp32s3", "esp32") if other != chip and other in CHIP_IDS)

