"""The catalogue of supported targets: the `[env:<target>]` sections of the root platformio.ini.

The catalogue is read with PlatformIO's own config parser, so `extends` and `[env]` defaults resolve exactly as
`pio run` resolves them. This is the one place platform, board, framework and library versions come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import overload

from platformio.project.config import ProjectConfig  # PlatformIO's own parser

from generator.core.errors import UserError
from generator.core.paths import CATALOGUE_PATH

FRAMEWORKS = ("arduino", "espidf")

# Options of the catalogue that describe the target to us, not to PlatformIO's build of the device project.
_CATALOGUE_ONLY_OPTIONS = {"extends", "custom_chip"}


@dataclass(frozen=True)
class Target:
    name: str                 # the env name, e.g. "esp32-arduino"
    board: str                # PlatformIO board id, e.g. "esp32dev"
    framework: str            # "arduino" | "espidf"
    chip: str                 # esptool chip name: "esp32" | "esp32c3" | "esp32s3"
    platform: str             # pinned platform spec, e.g. "platformio/espressif32@6.13.0"
    options: tuple[tuple[str, str], ...]  # every option the device's [env] needs, as PlatformIO text, in order

    @overload
    def option(self, key: str) -> str | None: ...
    @overload
    def option(self, key: str, default: str) -> str: ...

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)


@lru_cache(maxsize=4)
def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Target]:
    if not path.is_file():
        raise UserError(f"target catalogue {path} is missing", hint="reinstall the tool; the catalogue ships with it")
    config = ProjectConfig(str(path), parse_extra=False, expand_interpolations=True)
    targets: dict[str, Target] = {}
    for env in config.envs():
        section = f"env:{env}"
        options = []
        for key in config.options(env=env):
            if key in _CATALOGUE_ONLY_OPTIONS:
                continue
            value = config.get(section, key)
            text = "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)
            options.append((key, text))
        framework = config.get(section, "framework")[0]
        if framework not in FRAMEWORKS:
            raise UserError(f"{path}: [{section}] framework {framework!r} is not one of {', '.join(FRAMEWORKS)}")
        targets[env] = Target(
            name=env,
            board=config.get(section, "board"),
            framework=framework,
            chip=config.get(section, "custom_chip"),
            platform=config.get(section, "platform"),
            options=tuple(options),
        )
    return targets
