"""A stand-in for esptool 5 that records how it was called. `merge-bin` really merges (0xFF padding from 0x0, as
esptool does); `write-flash` checks its files exist. FAKE_ESPTOOL_FAIL picks a failure: no-connect | busy."""

import json
import os
import sys
from pathlib import Path

VALUE_OPTIONS = {"--chip", "-c", "--port", "-p", "--baud", "-b", "-o", "--output", "--flash-mode", "-fm",
                 "--flash-freq", "-ff", "--flash-size", "-fs", "--before", "--after"}


def record(argv):
    log = os.environ.get("FAKE_TOOLS_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps({"tool": "esptool", "argv": argv, "cwd": os.getcwd()}) + "\n")


def split(argv):
    options, positional, index = {}, [], 0
    while index < len(argv):
        arg = argv[index]
        if arg in VALUE_OPTIONS:
            options[arg] = argv[index + 1]
            index += 2
        else:
            positional.append(arg)
            index += 1
    return options, positional


def main(argv):
    record(argv)
    if argv[:1] == ["version"]:
        print("esptool v5.6.0")
        return 0
    options, positional = split(argv)
    command, pairs = positional[0], positional[1:]
    images = [(int(pairs[i], 0), Path(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    if command == "merge-bin":
        merged = bytearray()
        for offset, path in sorted(images):
            merged += b"\xff" * (offset - len(merged))
            merged += path.read_bytes()
        Path(options.get("-o") or options["--output"]).write_bytes(bytes(merged))
        print(f"Wrote {len(merged):#x} bytes to file '{options.get('-o')}', ready to flash to offset 0x0.")
        return 0
    if command == "write-flash":
        port = options.get("--port") or options.get("-p")
        failure = os.environ.get("FAKE_ESPTOOL_FAIL", "")
        print("esptool v5.6.0\nConnecting....")
        if failure == "no-connect":
            print("\nA fatal error occurred: Failed to connect to ESP32: No serial data received.")
            return 2
        if failure == "busy":
            print(f"\nA fatal error occurred: Could not open {port}, the port is busy or doesn't exist.\n"
                  f"([Errno 16] could not open port {port}: [Errno 16] Device or resource busy: '{port}')")
            return 2
        for offset, path in images:
            size = path.stat().st_size
            print(f"Wrote {size} bytes at {offset:#010x}.")
        print("Hard resetting via RTS pin...")
        return 0
    print(f"fake esptool: unsupported command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
