"""`gen build` as a whole: every image of a plan built (up to `jobs` PlatformIO runs at once), every device's
artifacts collected, the build records written. Progress is reported through a callback; the terminal display is
the CLI's."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from generator.core.errors import UserError
from generator.core.external_tools import require_esptool, require_platformio
from generator.firmware_build.artifacts import (
    SharedImage,
    collect_device_artifacts,
    store_shared_image,
    update_manifest,
)
from generator.firmware_build.plan import BuildPlan, Image
from generator.firmware_build.platformio import FIRMWARE_IMAGE, BuildTimer, BuiltImage, build_image
from generator.output.layout import LOGS_DIR
from generator.output.manifest import BuildRecord


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    images: tuple[SharedImage, ...]
    artifacts: dict[str, BuildRecord]
    timer: BuildTimer = field(compare=False)


# What a build says about each image while it runs: (image, state, done, what PlatformIO is doing now).
# States: building, merging, built, failed.
ImageProgress = Callable[[Image, str, bool, str], None]


def _no_progress(image: Image, state: str, done: bool, detail: str) -> None:
    pass


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise UserError(f"--jobs {jobs} is not a positive number", hint="use --jobs 1 or more")


# Signs an app image (generator.pki.ota_signing.sign_image with the project's key): unsigned path -> signed path.
ImageSigner = Callable[[Path, Path], None]


def signed_build(built: BuiltImage, sign: ImageSigner) -> BuiltImage:
    """The build with its firmware.bin signed: firmware.signed.bin next to PlatformIO's, which every artifact (the
    app image, factory.bin, flash.json) then uses, so the image first flashed by USB is signed too."""
    files = []
    for offset, name, path in built.files:
        if name == FIRMWARE_IMAGE:
            signed = path.with_name("firmware.signed.bin")
            sign(path, signed)
            path = signed
        files.append((offset, name, path))
    return dataclasses.replace(built, files=tuple(files))


def run_build(plan: BuildPlan, *, jobs: int = 1, on_progress: ImageProgress = _no_progress,
              timer: BuildTimer | None = None, sign: ImageSigner | None = None) -> BuildResult:
    """Builds every image of the plan (up to `jobs` PlatformIO runs at once), collects every device's artifacts
    and records them in the manifest. `sign`: with `ota:`, every app image is signed before it is stored. The
    first failure stops the build with its error."""
    check_jobs(jobs)
    pio = require_platformio()
    esptool = require_esptool()
    timer = timer or BuildTimer()
    out_dir = plan.out_dir

    def build_one(image: Image) -> SharedImage:
        try:
            on_progress(image, "building", False, "")
            built = build_image(image, pio=pio, log_path=out_dir / LOGS_DIR / f"build-{image.name}.log", timer=timer,
                                on_progress=lambda line: on_progress(image, "building", False, line))
            if sign is not None:
                on_progress(image, "signing", False, "")
                built = signed_build(built, sign)
            on_progress(image, "merging", False, "")
            shared = store_shared_image(built, out_dir, esptool=esptool)
        except BaseException:
            on_progress(image, "failed", True, "")
            raise
        on_progress(image, "built", True, "")
        return shared

    if jobs == 1 or len(plan.images) == 1:
        shared_images = [build_one(image) for image in plan.images]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(build_one, image) for image in plan.images]
            shared_images = [future.result() for future in futures]
    artifacts = {}
    for shared in shared_images:
        for device in shared.built.image.devices:
            artifacts[device.id] = collect_device_artifacts(device, shared, out_dir)
    update_manifest(out_dir, artifacts)
    return BuildResult(out_dir=out_dir, images=tuple(shared_images), artifacts=artifacts, timer=timer)
