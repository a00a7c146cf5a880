"""Firmware: the PlatformIO project of one device, Arduino (PubSubClient + WiFiClientSecure) or ESP-IDF (esp-mqtt).

`render_firmware(device, credentials)` is a pure function from the spec's device and its credentials to files.
The user's application code is not among them: it is the src/ folder next to the spec (every .c/.cpp/.h in it,
shared by every device, in git), with the user's own libraries in lib/ and components/ beside it; the project
compiles them in place (generator.firmware.app_layout). `render_app_starter` renders the first file of src/
(`USER_APP_SOURCE`, one per framework), which `gen generate` writes once.

gen's device runtime, gen_link (WiFi, clock, TLS, MQTT, backoff, provisioning, device key, OTA), is plain C/C++ in
`gen_link/` of the tool (`LINK_LIBRARY_DIR`), copied unchanged into each project: a PlatformIO library
(lib/gen_link/, library.json) for Arduino, an ESP-IDF component (components/gen_link/) for ESP-IDF. Only facts
are rendered: `firmware_facts(...)` decides them once, as a typed `FirmwareFacts`, and the templates
(`templates/<flavour>/<path>.j2` renders `<path>`; gen_config.h, app.h, the credentials header, platformio.ini,
sdkconfig.defaults, partitions) read them as `facts`. Every value that comes from a user reaches them already
escaped by `generator.core.c_literals`. Sizes, names and flags are decided here.

With `secrets: nvs` nothing device-specific enters the generated files (the id, topics and secrets are read from
the device's NVS partition at boot, see `generator.firmware.nvs_image`), so devices of a target whose other settings
match get byte-identical projects and one app image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from generator.core.errors import UserError
from generator.core.paths import LINK_LIBRARY_DIR, TEMPLATES_DIR
from generator.core.rendering import render_template
from generator.firmware.app_layout import IDF_MAIN_COMPONENT, USER_APP_SOURCE, AppLayout, user_code
from generator.firmware.facts import FirmwareFacts, firmware_facts
from generator.firmware.nvs_image import (
    NVS_PARTITION_OFFSET,
    NVS_PARTITION_SIZES,
    nvs_partition_size,
    render_nvs_image,
)
from generator.pki.credentials import ClientCredentials
from generator.spec.model import Device

# render_nvs_image and the partition constants are the firmware's other half; importable from here as well.
__all__ = [
    "FirmwareProject", "render_firmware", "render_nvs_image", "render_app_starter", "AppLayout",
    "NVS_PARTITION_OFFSET", "NVS_PARTITION_SIZES", "nvs_partition_size", "USER_APP_SOURCE",
]


# Where the rendered headers go: the project's include/ (PlatformIO adds it to every library's include path) or the
# gen_config component (ESP-IDF: gen_link and the main component require it).
CONFIG_DIR = {"arduino": "include", "espidf": "components/gen_config/include"}


# gen_link's sources that both flavours compile (templates/gen_link/common/).
_COMMON_LINK_FILES = ("ota_common.h", "version_order.h", "topic_filter.h", "retry_timing.h", "device_key.h",
                      "device_key.c", "provisioning.h", "provisioning.c", "log_publish.h", "log_publish.c")

# The runtime library in the project, and where its sources lie in the tool (`LINK_LIBRARY_DIR`): (tool, project).
_LINK_FILES = {
    "arduino": (("arduino/library.json", "lib/gen_link/library.json"),
                ("common/gen_link.h", "lib/gen_link/src/gen_link.h"),
                ("arduino/gen_link.cpp", "lib/gen_link/src/gen_link.cpp"),
                ("arduino/ota_update.h", "lib/gen_link/src/ota_update.h"),
                ("arduino/ota_update.cpp", "lib/gen_link/src/ota_update.cpp"),
                ("arduino/ota_version_record.h", "lib/gen_link/src/ota_version_record.h"),
                ("arduino/date_checking_client.h", "lib/gen_link/src/date_checking_client.h"),
                ("arduino/log_serial.h", "lib/gen_link/src/log_serial.h"),
                ("arduino/log_serial.cpp", "lib/gen_link/src/log_serial.cpp"),
                *((f"common/{name}", f"lib/gen_link/src/{name}") for name in _COMMON_LINK_FILES)),
    "espidf": (("espidf/CMakeLists.txt", "components/gen_link/CMakeLists.txt"),
               ("common/gen_link.h", "components/gen_link/include/gen_link.h"),
               ("espidf/gen_link.c", "components/gen_link/gen_link.c"),
               ("espidf/ota_update.h", "components/gen_link/ota_update.h"),
               ("espidf/ota_update.c", "components/gen_link/ota_update.c"),
               *((f"common/{name}", f"components/gen_link/{name}") for name in _COMMON_LINK_FILES),
               ("espidf/gen_config/CMakeLists.txt", "components/gen_config/CMakeLists.txt")),
}


@dataclass(frozen=True)
class FirmwareProject:
    generated: dict[str, bytes]        # regenerated every run (byte-identical for the same inputs)
    env_name: str                      # the [env:...] of the project's platformio.ini (= target name)
    secret_files: frozenset[str] = field(default_factory=frozenset)  # paths in `generated` to write 0600


# The rendered files of each flavour: (template under templates/<flavour>/ or templates/common/, path in the project).
_RENDERED = {
    "arduino": (("platformio.ini", "platformio.ini"), ("partitions.csv", "partitions.csv"),
                ("include/gen_config.h", "include/gen_config.h"), ("include/app.h", "include/app.h"),
                ("test/test_device.py", "test/test_device.py")),
    "espidf": (("platformio.ini", "platformio.ini"), ("partitions.csv", "partitions.csv"),
               ("sdkconfig.defaults", "sdkconfig.defaults"), ("CMakeLists.txt", "CMakeLists.txt"),
               ("main/CMakeLists.txt", f"{IDF_MAIN_COMPONENT}/CMakeLists.txt"),
               ("include/gen_config.h", "components/gen_config/include/gen_config.h"),
               ("include/app.h", "components/gen_config/include/app.h"),
               ("test/test_device.py", "test/test_device.py")),
}


def credentials_header(framework: str) -> str:
    """Where a secrets: embed project keeps its secrets (written 0600)."""
    return f"{CONFIG_DIR[framework]}/gen_credentials.h"


def render_firmware(device: Device, credentials: ClientCredentials, *, spec_name: str = "the device spec",
                    app: AppLayout = AppLayout(), ota_public_key: bytes | None = None) -> FirmwareProject:
    """The device's PlatformIO project. `spec_name` (e.g. "device.yaml") is named in every generated file's
    header; keep it the same for every device of a fleet so their `secrets: nvs` projects stay identical.
    `app` says where the user's code lies (by default, where it lies when OUT is the spec folder's build/).
    `ota_public_key`: with `ota:`, the public half of the project's signing key (PEM, pki/ota-signing.pem): the
    firmware checks downgrade permissions with it, and the Arduino firmware image signatures against its digest."""
    flavour = device.framework
    facts = firmware_facts(device, credentials, spec_name, app, ota_public_key)
    rendered = list(_RENDERED[flavour])
    config = CONFIG_DIR[flavour]
    if device.ota is not None:
        rendered.append(("include/gen_ota_config.h", f"{config}/gen_ota_config.h"))
    if device.secrets == "embed":
        rendered.append(("include/gen_credentials.h", credentials_header(flavour)))
    if device.vars:
        rendered.append(("include/gen_vars.h", f"{config}/gen_vars.h"))
    if facts.idf_dependencies:
        rendered.append(("main/idf_component.yml", f"{IDF_MAIN_COMPONENT}/idf_component.yml"))
    generated = {path: _render(flavour, template, facts) for template, path in rendered}
    generated.update(link_library(flavour))
    secret_files = frozenset({credentials_header(flavour)} & set(generated))
    return FirmwareProject(generated=generated, env_name=device.target.name, secret_files=secret_files)


def link_library(framework: str) -> dict[str, bytes]:
    """gen_link's sources as they lie in a project of this framework: the same bytes for every spec."""
    return {path: (LINK_LIBRARY_DIR / source).read_bytes() for source, path in _LINK_FILES[framework]}


def render_app_starter(devices: Sequence[Device]) -> bytes:
    """The first version of the user's app source for these devices (all of one framework): every function
    their app.h declares, each with a small working body."""
    frameworks = {device.framework for device in devices}
    assert len(frameworks) == 1, "one app source per framework"
    scheduled: dict[str, dict] = {}
    subscribes: dict[str, dict] = {}
    ack = None
    for device in devices:
        for p in device.publish:
            if p.interval > 0:
                scheduled.setdefault(p.name, {"name": p.name})
            if p.name == "ack":
                ack = p.name
        for s in device.subscribe:
            subscribes.setdefault(s.name, {"name": s.name})
    template = f"new/{USER_APP_SOURCE[frameworks.pop()]}.j2"
    return render_template(template, scheduled=list(scheduled.values()), subscribes=list(subscribes.values()),
                           ack=ack).encode("utf-8")


# "undefined reference to `app_build_humidity'" (C) or "...`app_build_humidity(char*, unsigned int)'" (C++).
_UNDEFINED_APP_FUNCTION = re.compile(r"undefined reference to [`'‘\"](?P<name>app_[A-Za-z0-9_]+)")


def user_app_path(firmware_dir: Path, framework: str) -> Path | None:
    """The folder of the user's app code a generated project compiles (its src/, next to the spec)."""
    return user_code(Path(firmware_dir)).app


def missing_app_functions(linker_output: str, firmware_dir: Path, framework: str) -> UserError | None:
    """When the link failed because the user's app source lacks functions app.h declares (the spec gained a
    publish or subscribe entry), the error that names each one with the declaration to add; else None."""
    names = list(dict.fromkeys(_UNDEFINED_APP_FUNCTION.findall(linker_output)))
    if not names:
        return None
    app_header = Path(firmware_dir) / CONFIG_DIR[framework] / "app.h"
    try:
        header = app_header.read_text(encoding="utf-8").splitlines()
    except OSError:
        header = []
    declarations = []
    for name in names:
        line = next((text.strip() for text in header if re.search(rf"\b{name}\(", text)), f"{name}(...);")
        declarations.append("  " + line)
    folder = user_app_path(firmware_dir, framework)
    app = f"{folder}/" if folder is not None else "your app's src/"
    count = "function" if len(names) == 1 else "functions"
    return UserError(f"your app code ({app}) lacks {len(names)} {count} the spec now needs, declared in "
                     f"{app_header}:\n" + "\n".join(declarations),
                     hint=f"define {'it' if len(names) == 1 else 'them'} in {app}; the comment above each "
                          "declaration in app.h says what it must do")


def _render(flavour: str, path: str, facts: FirmwareFacts) -> bytes:
    """templates/<flavour>/<path>.j2, or templates/common/<path>.j2 for a file both flavours share."""
    own = f"{flavour}/{path}.j2"
    template = own if (TEMPLATES_DIR / own).is_file() else f"common/{path}.j2"
    return render_template(template, facts=facts).encode("utf-8")
