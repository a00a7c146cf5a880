"""What a name must be to pass through every file it reaches: device ids (the MQTT client id, the certificate CN, a
file name, a C identifier suffix), C identifiers, and the host names the devices dial or resolve."""

from __future__ import annotations

import functools
import ipaddress
import keyword
import re
from typing import Any

from generator.core.hostnames import is_ip_address
from generator.spec.contract import BACKEND_IDENTITY

DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,22}$")
C_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
    "class", "delete", "new", "namespace", "template", "this", "throw", "try", "catch", "private", "public",
    "protected", "virtual", "operator", "friend", "true", "false", "nullptr", "setup", "loop", "main", "app_main",
}


@functools.lru_cache(maxsize=1024)
def host_problem(name: str) -> str | None:
    """Why `name` cannot be a broker or NTP host name (a DNS name or an IP address), or None. Remembered: a fleet's
    devices mostly name the same few hosts."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if len(name) > 253:
        return "is longer than 253 characters"
    labels = name.rstrip(".").split(".")
    if not all(HOST_LABEL.match(label) for label in labels):
        return "is neither an IP address nor a DNS name (letters, digits, '-' and '.' only)"
    if labels[-1].isdigit():
        return "looks like an IP address but is not a valid one"
    return None


def trailing_dot_problem(name: str) -> tuple[str, str] | None:
    if name.endswith("."):
        return ("ends in a dot: the device verifies the name exactly as written, and certificates never carry "
                "the dot, so the TLS name check would fail", f"write {name.rstrip('.')!r}")
    return None


def dialled_host_problem(host: str) -> tuple[str, str] | None:
    """Why the devices cannot dial `host`, though it is a valid name, and what to do; or None."""
    if is_ip_address(host) and ipaddress.ip_address(host).version == 6:
        return ("is an IPv6 address; the devices dial the broker over IPv4 (Arduino-ESP32 2.0.17's WiFiClient "
                "resolves and connects IPv4 only, and gen simulate routes IPv4)",
                "use the broker's IPv4 address or a DNS name; IPv6 addresses can go in broker.names")
    return trailing_dot_problem(host)


def device_id_problem(device_id: str) -> str | None:
    if not isinstance(device_id, str):
        return "must be a string"
    if DEVICE_ID_PATTERN.match(device_id):
        if device_id.lower() == BACKEND_IDENTITY:
            return f"{device_id!r} is reserved for the server-side identity that reads every device topic"
        return None
    if not device_id:
        return "is empty"
    if len(device_id) > 23:
        return (f"{device_id!r} is {len(device_id)} characters; MQTT 3.1.1 brokers must accept client ids of "
                "only up to 23 characters")
    bad = sorted({ch for ch in device_id if not (ch.isascii() and (ch.isalnum() or ch in "-_"))})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        return (f"{device_id!r} contains {shown}; the id is the MQTT client id, the certificate CN, the broker "
                "username, a file name and a C identifier suffix, so only letters, digits, '-' and '_' are safe"
                + (" ('+' and '#' are MQTT wildcards that Mosquitto's ACL refuses)" if set(bad) & {"+", "#"} else ""))
    return f"{device_id!r} must start with a letter or digit"


def c_name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not C_NAME_PATTERN.match(name):
        return "must be a C identifier (letters, digits and '_', not starting with a digit, at most 32 characters)"
    if name in C_KEYWORDS or keyword.iskeyword(name):
        return f"{name!r} is a reserved word in C/C++ or the firmware; choose another name"
    return None


def normal_host(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")
