"""The provisioning protocol between a device that makes its own key and `gen provision serve`: topics, the wire
format, its limits. Both ends read this one description: the service parses and renders with these functions, the
firmware templates get the topics and limits from here (generator.firmware.render), the spec's resolver asks
`reserved_topic_problem`.

Topics (MQTT 3.1.1; the broker's ACL lets only the device's own credential write its request topic and read its
response topic, so the topic says which credential sent a request: MQTT tells a subscriber nothing else):

    gen/bootstrap/<id>/req, gen/bootstrap/<id>/resp   first boot, over the bootstrap listener (user <id>@bootstrap)
    gen/prov/<id>/req,      gen/prov/<id>/resp        rotation, over the device's own certificate

A message is ASCII header lines `key value`, an empty line, then a body (PEM): no JSON parser on the device, and
mbedTLS parses concatenated PEM as it is.

    request (device -> service, at most REQUEST_MAX_BYTES)      response (service -> device, retained, QoS 1)
    gen-provision 1                                             gen-provision 1
    type csr | confirm | failed                                 type cert | refused | busy | confirmed | rotate
    id dev-01                                                   id dev-01
    request 5f0c2e8a9b...   (32 hex digits, from the device)    request 5f0c...   (echoed; `rotate`: a new one)
    reason first-boot | expiry | command | retry                serial 4A3F...    (cert, confirmed)
    serial 4A3F...          (confirm, failed)                   renew-at 1898121600  (cert: unix seconds)
    trust 9c1d...           (SHA-256 of the trust bundle held)  retry-after 30    (busy)
                                                                reason ...        (refused: words the device logs)
    <CSR PEM>               (csr)                               trust-at 1523     (cert: where in the body the new
                                                                                   trust bundle starts, if one comes)
                                                                <leaf PEM><issuing CA PEM>[<trust bundle PEM>]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from generator.core.topics import filter_matches

PROTOCOL_LINE = "gen-provision 1"
REQUEST_MAX_BYTES = 2048        # a P-256 CSR is about 350 bytes; anything near this is not one
RESPONSE_MAX_BYTES = 4096       # leaf + issuing CA + two roots of a trust renewal: about 2.9 KB
REQUEST_ID_HEX_DIGITS = 32      # 16 random bytes from the device's DRBG
REASON_MAX_BYTES = 160          # a refusal's reason: one line the device logs as it is

TOPIC_ROOT = "gen"              # the first topic level is gen's own for devices that make their key
CHANNELS = ("bootstrap", "operational")
_CHANNEL_LEVEL = {"bootstrap": "bootstrap", "operational": "prov"}
REQUEST_FILTERS = tuple(f"{TOPIC_ROOT}/{level}/+/req" for level in _CHANNEL_LEVEL.values())

REQUEST_TYPES = ("csr", "confirm", "failed")
RESPONSE_TYPES = ("cert", "refused", "busy", "confirmed", "rotate")
REQUEST_REASONS = ("first-boot", "expiry", "command", "retry")
BOOTSTRAP_USER_SUFFIX = "@bootstrap"   # '@' is in no device id, so a bootstrap user never equals a device

_HEX = re.compile(r"^[0-9a-f]+$")
_SERIAL = re.compile(r"^[0-9A-F]{1,40}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ProtocolError(ValueError):
    """A message that is not a well-formed request; the text is the reason the service gives."""


def request_topic(device_id: str, channel: str) -> str:
    return f"{TOPIC_ROOT}/{_CHANNEL_LEVEL[channel]}/{device_id}/req"


def response_topic(device_id: str, channel: str) -> str:
    return f"{TOPIC_ROOT}/{_CHANNEL_LEVEL[channel]}/{device_id}/resp"


def bootstrap_username(device_id: str) -> str:
    return device_id + BOOTSTRAP_USER_SUFFIX


def parse_request_topic(topic: str) -> tuple[str, str] | None:
    """(channel, device id) of a request topic, or None."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT or parts[3] != "req":
        return None
    channel = next((name for name, level in _CHANNEL_LEVEL.items() if level == parts[1]), None)
    if channel is None or not _ID.match(parts[2]):
        return None
    return channel, parts[2]


def reserved_topic_problem(topic: str, device_id: str, *, is_filter: bool) -> str | None:
    """Why a device that makes its own key cannot use `topic` (one of its publish topics or subscribe filters):
    the first level `gen` carries provisioning, and a filter must not take the device's own provisioning answers."""
    if topic == TOPIC_ROOT or topic.startswith(TOPIC_ROOT + "/"):
        return f"is under {TOPIC_ROOT}/, which carries provisioning for devices that make their own key"
    if is_filter:
        for channel in CHANNELS:
            answer = response_topic(device_id, channel)
            if filter_matches(topic, answer):
                return f"matches {answer!r}, where the device receives its certificates"
    return None


# ---------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Request:
    type: str                   # REQUEST_TYPES
    device_id: str
    request_id: str             # 32 hex digits
    reason: str = "first-boot"  # csr only
    serial: str = ""            # confirm, failed: the certificate concerned (upper-case hex)
    trust: str = ""             # SHA-256 (hex) of the trust bundle the device holds, or ""
    csr_pem: bytes = b""        # csr only


@dataclass(frozen=True)
class Response:
    type: str                   # RESPONSE_TYPES
    device_id: str
    request_id: str
    serial: str = ""
    renew_at: int | None = None
    retry_after: int | None = None
    reason: str = ""
    chain_pem: bytes = b""      # cert: leaf + issuing CA
    trust_pem: bytes = b""      # cert: the trust bundle the device should hold from now on (b"": keep its own)
    extra: dict[str, str] = field(default_factory=dict)


def _header(lines: list[tuple[str, str]]) -> bytes:
    return ("".join(f"{key} {value}\n" for key, value in [("gen-provision", "1"), *lines]) + "\n").encode("ascii")


def render_request(request: Request) -> bytes:
    lines = [("type", request.type), ("id", request.device_id), ("request", request.request_id)]
    if request.type == "csr":
        lines.append(("reason", request.reason))
    if request.serial:
        lines.append(("serial", request.serial))
    if request.trust:
        lines.append(("trust", request.trust))
    return _header(lines) + request.csr_pem


def render_response(response: Response) -> bytes:
    lines = [("type", response.type), ("id", response.device_id), ("request", response.request_id)]
    if response.serial:
        lines.append(("serial", response.serial))
    if response.renew_at is not None:
        lines.append(("renew-at", str(response.renew_at)))
    if response.retry_after is not None:
        lines.append(("retry-after", str(response.retry_after)))
    if response.reason:
        lines.append(("reason", one_line(response.reason)))
    if response.trust_pem:
        lines.append(("trust-at", str(len(response.chain_pem))))
    data = _header(lines) + response.chain_pem + response.trust_pem
    if len(data) > RESPONSE_MAX_BYTES:
        raise ValueError(f"a {response.type} response of {len(data)} bytes is over the {RESPONSE_MAX_BYTES} a "
                         "device receives")
    return data


def one_line(text: str) -> str:
    """A reason as the device logs it: printable ASCII, one line, at most REASON_MAX_BYTES."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return cleaned[:REASON_MAX_BYTES]


def _split(payload: bytes, limit: int) -> tuple[dict[str, str], bytes]:
    if len(payload) > limit:
        raise ProtocolError(f"request too large ({len(payload)} bytes; at most {limit})")
    head, separator, body = payload.partition(b"\n\n")
    if not separator:
        raise ProtocolError("malformed request (no empty line after the header)")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("malformed request (the header is not ASCII)") from None
    lines = text.split("\n")
    if lines[0] != PROTOCOL_LINE:
        raise ProtocolError(f"malformed request (the first line is not {PROTOCOL_LINE!r})")
    header: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        if not key or key in header or not value.isprintable():
            raise ProtocolError("malformed request (a header line is empty, repeated or unprintable)")
        header[key] = value
    return header, body


def parse_request(payload: bytes, *, topic_device_id: str) -> Request:
    """A request from its payload; the id it names must be the one of the topic it came on."""
    header, body = _split(payload, REQUEST_MAX_BYTES)
    kind = header.get("type", "")
    known = {"type", "id", "request", "reason", "serial", "trust"}
    if kind not in REQUEST_TYPES or set(header) - known:
        raise ProtocolError(f"malformed request (type {kind!r} or unknown header keys)")
    device_id, request_id = header.get("id", ""), header.get("request", "")
    if device_id != topic_device_id:
        raise ProtocolError(f"request names id {device_id!r} on the topic of {topic_device_id!r}")
    if len(request_id) != REQUEST_ID_HEX_DIGITS or not _HEX.match(request_id):
        raise ProtocolError(f"malformed request (the request id is not {REQUEST_ID_HEX_DIGITS} lower-case hex digits)")
    trust = header.get("trust", "")
    if trust and (len(trust) != 64 or not _HEX.match(trust)):
        raise ProtocolError("malformed request (trust is not a SHA-256 in hex)")
    serial = header.get("serial", "")
    if kind == "csr":
        reason = header.get("reason", "")
        if reason not in REQUEST_REASONS:
            raise ProtocolError(f"malformed request (reason {reason!r})")
        if not body.strip():
            raise ProtocolError("malformed request (a csr without a CSR)")
        return Request(kind, device_id, request_id, reason=reason, trust=trust, csr_pem=body)
    if not _SERIAL.match(serial):
        raise ProtocolError(f"malformed request ({kind} without a serial in upper-case hex)")
    return Request(kind, device_id, request_id, serial=serial, trust=trust)


def parse_response(payload: bytes) -> Response:
    """A response (what the device reads; the tests and the fleet bench read it the same way)."""
    header, body = _split(payload, RESPONSE_MAX_BYTES)
    trust_at = int(header["trust-at"]) if "trust-at" in header else len(body)
    return Response(
        type=header.get("type", ""), device_id=header.get("id", ""), request_id=header.get("request", ""),
        serial=header.get("serial", ""),
        renew_at=int(header["renew-at"]) if "renew-at" in header else None,
        retry_after=int(header["retry-after"]) if "retry-after" in header else None,
        reason=header.get("reason", ""), chain_pem=body[:trust_at], trust_pem=body[trust_at:],
        extra={k: v for k, v in header.items()
               if k not in ("type", "id", "request", "serial", "renew-at", "retry-after", "reason", "trust-at")})


def serial_text(serial: int) -> str:
    return f"{serial:X}"
