"""A stand-in for PlatformIO's `pio` that records how it was called and writes plausible outputs.

It proves how gen CALLS PlatformIO, never that firmware builds. FAKE_TOOLS_LOG names a file that gets one JSON
line per call; FAKE_PIO_FAIL picks a failure: registry | compile | link | crash (the outputs mimic real PlatformIO 6).
"""

import configparser
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

BOARD_CHIPS = {"esp32dev": "esp32", "esp32-c3-devkitm-1": "esp32c3", "esp32-s3-devkitc-1": "esp32s3"}
BOOTLOADER_OFFSETS = {"esp32": "0x1000", "esp32c3": "0x0", "esp32s3": "0x0"}
FRAMEWORK_PACKAGES = {"arduino": ("framework-arduinoespressif32", "3.20017.241212+sha.dcc1105b"),
                      "espidf": ("framework-espidf", "3.50503.0")}
PARTITIONS = {  # (label, type, subtype, offset, size): Arduino default.csv and IDF partitions_singleapp.csv
    "arduino": [("nvs", 1, 2, 0x9000, 0x5000), ("otadata", 1, 0, 0xE000, 0x2000), ("app0", 0, 0x10, 0x10000, 0x140000),
                ("app1", 0, 0x11, 0x150000, 0x140000), ("spiffs", 1, 0x82, 0x290000, 0x160000)],
    "espidf": [("nvs", 1, 2, 0x9000, 0x6000), ("phy_init", 1, 1, 0xF000, 0x1000), ("factory", 0, 0, 0x10000, 0x100000)],
}


def record(argv):
    log = os.environ.get("FAKE_TOOLS_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps({"tool": "pio", "argv": argv, "cwd": os.getcwd(),
                                     "core_dir": os.environ.get("PLATFORMIO_CORE_DIR")}) + "\n")


def option(argv, *names, default=None):
    for index, arg in enumerate(argv):
        if arg in names and index + 1 < len(argv):
            return argv[index + 1]
    return default


def project(argv):
    directory = Path(option(argv, "-d", "--project-dir", default=os.getcwd())).resolve()
    env = option(argv, "-e", "--environment")
    config = configparser.ConfigParser(inline_comment_prefixes=(";",))
    config.read(directory / "platformio.ini")
    section = config[f"env:{env}"]
    board = section.get("board")
    return directory, env, board, BOARD_CHIPS[board], section.get("framework"), section.get("platform")


def partitions_csv(directory, env):
    config = configparser.ConfigParser(inline_comment_prefixes=(";",))
    config.read(directory / "platformio.ini")
    name = config[f"env:{env}"].get("board_build.partitions")
    return directory / name if name else None


def core_dir(directory):
    return Path(os.environ.get("PLATFORMIO_CORE_DIR") or directory / ".pio" / "fake-core")


TYPES = {"app": 0, "data": 1}
SUBTYPES = {"factory": 0, "ota_0": 0x10, "ota_1": 0x11, "ota": 0, "phy": 1, "nvs": 2, "coredump": 3,
            "nvs_keys": 4, "fat": 0x81, "spiffs": 0x82}


def csv_partitions(path):
    """The project's own partitions CSV (board_build.partitions), as (label, type, subtype, offset, size)."""
    rows = []
    for line in path.read_text().splitlines():
        fields = [f.strip() for f in line.split("#")[0].split(",")]
        if len(fields) >= 5 and fields[0]:
            rows.append((fields[0], TYPES[fields[1]], SUBTYPES[fields[2]], int(fields[3], 0), int(fields[4], 0)))
    return rows


def partition_table(framework, csv_path=None):
    rows = csv_partitions(csv_path) if csv_path and csv_path.is_file() else PARTITIONS[framework]
    table = b"".join(struct.pack("<2sBBII16sI", b"\xaa\x50", t, s, o, n, label.encode().ljust(16, b"\0"), 0)
                     for label, t, s, o, n in rows)
    table += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(table).digest()
    return table + b"\xff" * (0xC00 - len(table))


def sources_digest(directory):
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and ".pio" not in path.relative_to(directory).parts:
            digest.update(str(path.relative_to(directory)).encode() + path.read_bytes())
    return digest.digest()


def framework_paths(directory, chip, framework):
    package = core_dir(directory) / "packages" / FRAMEWORK_PACKAGES[framework][0]
    build = directory / ".pio" / "build"
    if framework == "arduino":
        bootloader = package / "tools" / "sdk" / chip / "bin" / "bootloader_dio_40m.bin"
        boot_app0 = package / "tools" / "partitions" / "boot_app0.bin"
    else:
        bootloader, boot_app0 = None, None
    return package, bootloader, boot_app0, build


CHIP_IDS = {"esp32": 0x0000, "esp32c3": 0x0005, "esp32s3": 0x0009}


def app_image(chip, payload):
    """A well-formed app image (as esptool's elf2image lays one out) whose segment holds an esp_app_desc_t and the
    payload: header, segment, checksum on a 16-byte boundary, appended SHA-256."""
    desc = struct.pack("<II8s32s32s", 0xABCD5432, 0, b"", b"fake", b"firmware") + b"\0" * (256 - 80)
    data = desc + payload + b"\0" * (-len(payload) % 4)
    body = bytearray(struct.pack("<BBBBIB3sHBHH4sB", 0xE9, 1, 2, 0x20, 0x3F400020, 0xEE, b"\0\0\0",
                                 CHIP_IDS[chip], 0, 0, 0xFFFF, b"\0" * 4, 1))
    body += struct.pack("<II", 0x3F400020, len(data)) + data
    checksum = 0xEF
    for byte in data:
        checksum ^= byte
    body += b"\0" * (15 - len(body) % 16) + bytes([checksum])
    return bytes(body + hashlib.sha256(body).digest())


def run(argv):
    directory, env, board, chip, framework, platform = project(argv)
    print(f"Processing {env} (platform: {platform}; board: {board}; framework: {framework})")
    print("-" * 80)
    failure = os.environ.get("FAKE_PIO_FAIL", "")
    if failure == "registry":
        print(f"Platform Manager: Installing {platform.replace('@', ' @ ')}")
        print("HTTPClientError: ")
        return 1
    if failure == "compile":
        print(f"Compiling .pio/build/{env}/src/main.cpp.o")
        print("src/main.cpp: In function 'void setup()':")
        print("src/main.cpp:12:5: error: 'mqtt_connectt' was not declared in this scope; did you mean 'mqtt_connect'?")
        print("   12 |     mqtt_connectt();")
        print("      |     ^~~~~~~~~~~~~")
        print(f"{directory}/src/app_hooks.cpp:3:1: error: expected ';' before '}}' token")
        print(f"*** [.pio/build/{env}/src/main.cpp.o] Error 1")
        print("========================= [FAILED] Took 2.31 seconds =========================")
        return 1
    if failure == "link":  # the user's app source lacks a function app.h declares (GNU ld, as the ESP toolchains)
        print(f"Linking .pio/build/{env}/firmware.elf")
        print(f"/root/.platformio/packages/toolchain-xtensa-esp32/bin/../lib/gcc/xtensa-esp32-elf/8.4.0/../../../../"
              f"xtensa-esp32-elf/bin/ld: .pio/build/{env}/src/main.cpp.o:(.literal._Z4loopv+0x10): undefined "
              f"reference to `app_build_humidity(char*, unsigned int)'")
        print("collect2: error: ld returned 1 exit status")
        print(f"*** [.pio/build/{env}/firmware.elf] Error 1")
        return 1
    if failure == "crash":
        print(f"Error: Unknown board ID '{board}-x'")
        return 1
    if "-t" in argv or "--target" in argv:
        target = option(argv, "-t", "--target")
        print(f"Uploading .pio/build/{env}/firmware.bin to {option(argv, '--upload-port')} ({target})")
        return 0
    package, bootloader, boot_app0, build = framework_paths(directory, chip, framework)
    package.mkdir(parents=True, exist_ok=True)
    (package / "package.json").write_text(json.dumps({"name": package.name, "version": FRAMEWORK_PACKAGES[framework][1]}))
    out = build / env
    out.mkdir(parents=True, exist_ok=True)
    app = app_image(chip, sources_digest(directory) * 64)
    (out / "firmware.bin").write_bytes(app)
    (out / "firmware.elf").write_bytes(b"\x7fELF" + app)
    (out / "partitions.bin").write_bytes(partition_table(framework, partitions_csv(directory, env)))
    boot = b"\xe9\x03\x02\x20" + hashlib.sha256(chip.encode()).digest() * 32
    if bootloader is None:
        (out / "bootloader.bin").write_bytes(boot)
    else:
        bootloader.parent.mkdir(parents=True, exist_ok=True)
        bootloader.write_bytes(boot)
        boot_app0.parent.mkdir(parents=True, exist_ok=True)
        boot_app0.write_bytes(b"\xff" * 4096 + b"\x01\x00\x00\x00" + b"\xff" * 4092)
    print(f"Building .pio/build/{env}/firmware.bin")
    print("========================= [SUCCESS] Took 1.02 seconds =========================")
    return 0


def application_offset(directory, env):
    """Where the first app partition starts (PlatformIO's espidf builder reads it from the partition table)."""
    csv_path = partitions_csv(directory, env)
    rows = csv_partitions(csv_path) if csv_path and csv_path.is_file() else []
    return next((offset for _, kind, _, offset, _ in rows if kind == 0), 0x10000)


def otadata_partition(directory, env):
    csv_path = partitions_csv(directory, env)
    rows = csv_partitions(csv_path) if csv_path and csv_path.is_file() else []
    return next(((offset, size) for _, kind, subtype, offset, size in rows if kind == 1 and subtype == 0), None)


def metadata(argv):
    directory, env, board, chip, framework, platform = project(argv)
    package, bootloader, boot_app0, build = framework_paths(directory, chip, framework)
    out = build / env
    images = [{"offset": BOOTLOADER_OFFSETS[chip], "path": str(bootloader or out / "bootloader.bin")},
              {"offset": "0x8000", "path": str(out / "partitions.bin")}]
    if boot_app0:
        images.append({"offset": "0xe000", "path": str(boot_app0)})
    otadata = otadata_partition(directory, env) if framework == "espidf" else None
    if otadata is not None:   # platform-espressif32's espidf builder: an erased ota_data_initial.bin
        (out / "ota_data_initial.bin").write_bytes(b"\xff" * otadata[1])
        images.append({"offset": hex(otadata[0]), "path": str(out / "ota_data_initial.bin")})
    data = {env: {
        "build_type": "release", "env_name": env, "prog_path": str(out / "firmware.elf"),
        "includes": {"build": [str(directory / "include"), str(directory / "src")],
                     "compatlib": [], "toolchain": [str(package / "cores" / "esp32")]},
        "extra": {"flash_images": images, "application_offset": hex(application_offset(directory, env))},
    }}
    print(json.dumps(data))
    return 0


def main(argv):
    record(argv)
    if argv[:1] == ["--version"]:
        print("PlatformIO Core, version 6.2.0")
        return 0
    if argv[:1] == ["run"]:
        return run(argv)
    if argv[:2] == ["project", "metadata"]:
        return metadata(argv)
    if argv[:2] == ["device", "monitor"]:
        print(f"--- Terminal on {option(argv, '-p', '--port')} | {option(argv, '-b', '--baud')} 8-N-1")
        return 0
    print(f"fake pio: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
