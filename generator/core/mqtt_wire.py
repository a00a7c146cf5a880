"""A minimal, synchronous MQTT 3.1.1 client over an already connected (TLS) socket: exactly what `gen doctor`
needs to prove a link, and nothing more. No threads, no reconnects; every wait is a read with the socket's
timeout, and `ping()` is the barrier that says "the broker has sent me everything it routed before this".

    session = MqttSession(tls_socket)
    code = session.connect("dev-doctor", username="dev", password=pw)   # CONNACK return code (0 = accepted)
    session.subscribe([("devices/dev/cmd/#", 1)])
    session.publish("devices/dev/telemetry", b"probe", qos=1)            # waits for the PUBACK
    session.ping()                                                       # messages routed so far are in .received
    session.disconnect()
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14


class ConnectionClosed(Exception):
    """The broker closed the connection (or the socket failed) before the expected packet arrived."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _binary(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def _packet(packet_type: int, flags: int, body: bytes) -> bytes:
    return bytes([(packet_type << 4) | flags]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, *, username: str | None = None, password: str | None = None,
                   keepalive: int = 30, clean_session: bool = True, will: tuple[str, bytes] | None = None,
                   will_qos: int = 1, will_retain: bool = False) -> bytes:
    """MQTT 3.1.1 CONNECT; `will` is (topic, payload)."""
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    if will is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _string(client_id)
    if will is not None:
        body += _string(will[0]) + _binary(will[1])
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _binary(password.encode("utf-8"))
    return _packet(CONNECT, 0, body)


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, packet_id: int | None = None,
                   retain: bool = False) -> bytes:
    """MQTT 3.1.1 PUBLISH; QoS 1 and 2 need a packet id."""
    packet_id_field = struct.pack("!H", packet_id) if qos else b""
    return _packet(PUBLISH, (qos << 1) | (0x01 if retain else 0), _string(topic) + packet_id_field + payload)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """MQTT 3.1.1 SUBSCRIBE for (filter, qos) pairs."""
    body = struct.pack("!H", packet_id) + b"".join(_string(f) + bytes([qos]) for f, qos in filters)
    return _packet(SUBSCRIBE, 0x02, body)


@dataclass
class MqttSession:
    sock: socket.socket
    received: list[Message] = field(default_factory=list)
    session_present: bool = False
    _next_packet_id: int = 1
    _buffer: bytes = b""

    # ---------------------------------------------------------------------------------------- operations

    def connect(self, client_id: str, *, username: str | None = None, password: str | None = None,
                keepalive: int = 30, clean_session: bool = True, will: tuple[str, bytes] | None = None) -> int:
        """Sends CONNECT (by default a clean session without a will) and returns the CONNACK return code;
        `session_present` then says whether the broker resumed a stored session."""
        self._send(connect_packet(client_id, username=username, password=password, keepalive=keepalive,
                                  clean_session=clean_session, will=will))
        packet_type, _, body = self._read_packet()
        if packet_type != CONNACK or len(body) < 2:
            raise ConnectionClosed(f"expected CONNACK, got packet type {packet_type}")
        self.session_present = bool(body[0] & 0x01)
        return body[1]

    def subscribe(self, filters: list[tuple[str, int]]) -> list[int]:
        packet_id = self._packet_id()
        self._send(subscribe_packet(packet_id, filters))
        body = self._wait_for(SUBACK, packet_id)
        return list(body[2:])

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publishes, by default without the retain flag (a probe leaves nothing behind); QoS 1 waits for the
        PUBACK."""
        if qos == 0:
            self._send(publish_packet(topic, payload, retain=retain))
            return
        packet_id = self._packet_id()
        self._send(publish_packet(topic, payload, qos=1, packet_id=packet_id, retain=retain))
        self._wait_for(PUBACK, packet_id)

    def next_message(self) -> Message:
        """The next PUBLISH from the broker (one already received first). ConnectionClosed when the socket's
        timeout passes without one (its __cause__ is then socket.timeout) or the connection ends."""
        while not self.received:
            self._read_packet()
        return self.received.pop(0)

    def ping(self) -> None:
        self._send(_packet(PINGREQ, 0, b""))
        self._wait_for(PINGRESP, None)

    def disconnect(self) -> None:
        try:
            self._send(_packet(DISCONNECT, 0, b""))
        except ConnectionClosed:
            pass

    # ---------------------------------------------------------------------------------------- wire

    def _packet_id(self) -> int:
        packet_id = self._next_packet_id
        self._next_packet_id = packet_id % 65535 + 1
        return packet_id

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise ConnectionClosed(str(error) or type(error).__name__) from error

    def _wait_for(self, wanted: int, packet_id: int | None) -> bytes:
        while True:
            packet_type, _, body = self._read_packet()
            if packet_type == wanted and (packet_id is None or body[:2] == struct.pack("!H", packet_id)):
                return body

    def _read_packet(self) -> tuple[int, int, bytes]:
        header = self._read_exactly(1)[0]
        length, multiplier = 0, 1
        for _ in range(4):
            digit = self._read_exactly(1)[0]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            if not digit & 0x80:
                break
        body = self._read_exactly(length)
        packet_type, flags = header >> 4, header & 0x0F
        if packet_type == PUBLISH:
            self._take_publish(flags, body)
        return packet_type, flags, body

    def _take_publish(self, flags: int, body: bytes) -> None:
        qos = (flags >> 1) & 0x03
        (topic_length,) = struct.unpack("!H", body[:2])
        topic = body[2:2 + topic_length].decode("utf-8", "replace")
        rest = body[2 + topic_length:]
        if qos:
            packet_id, rest = rest[:2], rest[2:]
            self._send(_packet(PUBACK, 0, packet_id))
        self.received.append(Message(topic, rest, qos, bool(flags & 0x01)))

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout as error:
                raise ConnectionClosed("no answer from the broker (timed out)") from error
            except OSError as error:
                raise ConnectionClosed(str(error) or type(error).__name__) from error
            if not chunk:
                raise ConnectionClosed("the broker closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data
