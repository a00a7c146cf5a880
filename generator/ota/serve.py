"""`gen ota serve`: the images `gen ota publish` staged (OUT/ota/<id>/<sha256>.bin), over HTTPS with the broker's own
certificate (the devices already trust it and dial its name), to devices that present their client certificate.

- TLS 1.2 or later; a client certificate is required and must chain to the project's CA (the broker's cafile), and
  must not be on the CRL (pki/crl.pem, the one `gen pki revoke` re-signs). The CRL is read again whenever that file
  changes, so a revoked device is refused from its next connection on, without a restart.
- A device gets only its own images: the certificate's CN must be the <id> of /<id>/<sha256>.bin (else 403).
- Every request and every refused handshake is logged in one line, with the reason.

The TLS handshake runs on the connection's own thread, so a client that stalls it holds up nobody else. Each
connection has deadlines: its request (handshake, request line, headers) within REQUEST_HEAD_DEADLINE_S, and the
whole of it (the image included) within REQUEST_DEADLINE_S; then its socket is shut down, whatever it was doing
(a client that sends a byte every few seconds, or reads one, no longer holds a thread for ever). At most
MAX_CONNECTIONS connections are served at once, MAX_CONNECTIONS_PER_DEVICE of them per certificate; beyond that a
connection is closed at once, and logged (at most a few lines a minute).
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from generator.broker.render import CA_FILE, CERT_FILE, KEY_FILE
from generator.core.errors import UserError
from generator.output.layout import BROKER_DIR, OTA_DIR
from generator.pki.layout import PkiLayout
from generator.spec.model import Spec

HANDSHAKE_TIMEOUT_S = 15.0
IO_TIMEOUT_S = 30.0
REQUEST_HEAD_DEADLINE_S = 20.0    # TLS handshake + request line + headers
REQUEST_DEADLINE_S = 600.0        # the whole connection: a 1.875 MB slot at 3.2 KB/s, far below any WiFi
MAX_CONNECTIONS = 64              # connections served at once (one thread each)
MAX_CONNECTIONS_PER_DEVICE = 2    # of them, per client certificate
REFUSAL_LOG_LINES = 5             # "too many connections" lines per REFUSAL_LOG_WINDOW_S; then one count
REFUSAL_LOG_WINDOW_S = 60.0
CHUNK = 16 * 1024
IMAGE_NAME = re.compile(r"^[0-9a-f]{64}\.bin$")

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class ServerFiles:
    cert: Path                    # the broker's certificate (leaf + chain): devices trust it and dial its name
    key: Path
    client_ca: Path               # what client certificates must chain to (the broker's cafile)
    crl: Path                     # the PKI's CRL
    images: Path                  # OUT/ota/


def server_files(spec: Spec, out_dir: Path) -> ServerFiles:
    """The files `gen ota serve` needs, checked to be there. UserError (exit 2) when they are not."""
    if spec.ota_port is None:
        raise UserError(f"{spec.path} has no `ota:`: no device of it takes updates over the air",
                        hint="add `ota: {}` to the spec, then gen generate, gen build and flash the devices once")
    if spec.broker.external:
        raise UserError("gen ota serve serves images with the broker's certificate, which a broker you do not run "
                        "(broker.external) leaves elsewhere", hint="run it where that certificate and key are")
    broker = Path(out_dir) / BROKER_DIR
    files = ServerFiles(cert=broker / CERT_FILE, key=broker / KEY_FILE, client_ca=broker / CA_FILE,
                        crl=PkiLayout(spec.pki.dir).crl, images=Path(out_dir) / OTA_DIR)
    for path in (files.cert, files.key, files.client_ca, files.crl):
        if not path.is_file():
            raise UserError(f"{path} does not exist", hint=f"run `gen generate {spec.path}` first")
    return files


def server_context(files: ServerFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2       # what Arduino-ESP32 2.0.x's mbedTLS 2.28 speaks
    context.load_cert_chain(str(files.cert), str(files.key))
    context.load_verify_locations(cafile=str(files.client_ca))
    context.load_verify_locations(cafile=str(files.crl))    # the CRL of the CA that issues the device certificates
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _common_name(cert: dict[str, Any] | None) -> str | None:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class OtaRequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gen-ota"
    server: "OtaServer"

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        self.server.head_done(self.connection)
        device_id = _common_name(self.connection.getpeercert()) or "?"   # type: ignore[attr-defined]
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or not IMAGE_NAME.match(parts[1]):
            return self._refuse(404, device_id, "not an image path (/<device id>/<sha256>.bin)")
        if parts[0] != device_id:
            return self._refuse(403, device_id, f"its certificate is {device_id}'s, the image {parts[0]}'s")
        path = self.server.files.images / parts[0] / parts[1]
        try:
            image = open(path, "rb")
        except OSError:
            return self._refuse(404, device_id, "no such image was published (gen ota publish)")
        with image:
            size = os.fstat(image.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Connection", "close")
            self.end_headers()
            sent = self.server.send_image(self, image, size)
        self.close_connection = True
        self.server.log(f"200 {device_id} {self.path}: {sent:,} of {size:,} bytes")

    def _refuse(self, code: int, device_id: str, why: str) -> None:
        body = f"{code} {why}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True
        self.server.log(f"{code} {device_id} {self.path}: {why}")

    def log_message(self, format: str, *args: Any) -> None:   # every request is logged once, by do_GET
        pass


class OtaServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], files: ServerFiles, log: LogSink, *,
                 head_deadline_s: float = REQUEST_HEAD_DEADLINE_S, deadline_s: float = REQUEST_DEADLINE_S,
                 max_connections: int = MAX_CONNECTIONS, max_per_device: int = MAX_CONNECTIONS_PER_DEVICE):
        self.files = files
        self.log = log
        self.head_deadline_s, self.deadline_s = head_deadline_s, deadline_s
        self.max_per_device = max_per_device
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        self._per_device: dict[str, int] = {}
        self._head_timers: dict[int, threading.Timer] = {}
        self._refusals = (0.0, 0, 0)      # window start, logged, left out
        self._context: ssl.SSLContext | None = None
        self._crl_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        super().__init__(address, OtaRequestHandler)

    # -------------------------------------------------------------------------- limits

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if a slot is free; otherwise it is closed at once."""
        if not self._slots.acquire(blocking=False):
            self._log_refusal(f"refused {client_address[0]}:{client_address[1]}: {self.max_connections} "
                              "connections at once already")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)   # type: ignore[misc]
        finally:
            self._slots.release()

    def _log_refusal(self, line: str) -> None:
        now = time.monotonic()
        with self._lock:
            start, logged, left_out = self._refusals
            if now - start >= REFUSAL_LOG_WINDOW_S:
                if left_out:
                    self.log(f"{left_out} more connections refused in the last {REFUSAL_LOG_WINDOW_S:g} s "
                             "(not logged one by one)")
                start, logged, left_out = now, 0, 0
            if logged < REFUSAL_LOG_LINES:
                self.log(line)
                logged += 1
            else:
                left_out += 1
            self._refusals = (start, logged, left_out)

    def head_done(self, connection: Any) -> None:
        """The request's head has arrived: its own deadline no longer applies (the whole one does)."""
        timer = self._head_timers.pop(id(connection), None)
        if timer is not None:
            timer.cancel()

    @staticmethod
    def _cut(holder: list[socket.socket], flag: list[str], why: str) -> None:
        flag.append(why)
        try:   # the descriptor itself (not TLS's own shutdown): a read or write blocked on it returns at once
            socket.socket.shutdown(holder[0], socket.SHUT_RDWR)
        except OSError:
            pass

    def context(self) -> ssl.SSLContext:
        """The TLS context, made again when the CRL file changed (a revocation takes effect at once)."""
        stat = self.files.crl.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._context is None or stamp != self._crl_stamp:
                if self._context is not None:
                    self.log(f"{self.files.crl} changed: read again")
                self._context = server_context(self.files)
                self._crl_stamp = stamp
            return self._context

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The handshake (on this connection's thread), then the request, within their deadlines."""
        where = f"{client_address[0]}:{client_address[1]}"
        cut: list[str] = []
        holder = [request]                       # the TLS socket once wrapped (wrapping detaches `request`)
        whole = threading.Timer(self.deadline_s, self._cut,
                                (holder, cut, f"the {self.deadline_s:g} s deadline of a whole request"))
        head = threading.Timer(self.head_deadline_s, self._cut,
                               (holder, cut, f"the {self.head_deadline_s:g} s deadline for a request's head"))
        for timer in (whole, head):
            timer.daemon = True
            timer.start()
        device_id: str | None = None
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                tls = self.context().wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as error:
                reason = cut[0] if cut else (getattr(error, "reason", None) or getattr(error, "verify_message", None)
                                             or str(error))
                self.log(f"refused {where}: TLS handshake failed ({reason})")
                return
            holder[0] = tls
            if cut:                              # the deadline passed while the wrapping detached `request`
                tls.close()
                self.log(f"connection from {where} cut at {cut[0]}")
                return
            device_id = _common_name(tls.getpeercert()) or "?"
            with self._lock:
                if self._per_device.get(device_id, 0) >= self.max_per_device:
                    device_id, full = None, True
                else:
                    self._per_device[device_id] = self._per_device.get(device_id, 0) + 1
                    full = False
            if full:
                self._log_refusal(f"refused {where}: {self.max_per_device} connections of that certificate at once "
                                  "already")
                tls.close()
                return
            self._head_timers[id(tls)] = head
            try:
                tls.settimeout(IO_TIMEOUT_S)
                OtaRequestHandler(tls, client_address, self)
            except OSError as error:
                if not cut:
                    self.log(f"connection from {where} ended: {error}")
            finally:
                self._head_timers.pop(id(tls), None)
                tls.close()
            if cut:
                self.log(f"connection from {where} ({device_id}) cut at {cut[0]}")
        finally:
            whole.cancel()
            head.cancel()
            if device_id is not None:
                with self._lock:
                    self._per_device[device_id] -= 1
                    if not self._per_device[device_id]:
                        del self._per_device[device_id]

    def send_image(self, handler: OtaRequestHandler, image: BinaryIO, size: int) -> int:
        """Streams the image; returns the bytes sent."""
        sent = 0
        while chunk := image.read(CHUNK):
            handler.wfile.write(chunk)
            sent += len(chunk)
        return sent

    def handle_error(self, request: Any, client_address: Any) -> None:   # no tracebacks on stderr
        self.log(f"connection from {client_address[0]}:{client_address[1]} failed")


def open_server(files: ServerFiles, *, bind: str, port: int, log: LogSink, **limits: Any) -> OtaServer:
    """The server, listening (serve_forever() to run it). UserError when the port cannot be had. `limits`: the
    deadlines and connection caps of OtaServer, for tests."""
    try:
        server = OtaServer((bind, port), files, log, **limits)
    except OSError as error:
        raise UserError(f"cannot listen on {bind}:{port}: {error.strerror}",
                        hint="choose another port with --port (and ota.port in the spec), "
                             "or stop what uses it") from None
    try:
        server.context()        # a broken certificate or CRL says so now, not at the first device
    except (ssl.SSLError, OSError) as error:
        server.server_close()
        raise UserError(f"cannot load the server's certificate, key, CA or CRL ({files.cert}, {files.crl}): {error}",
                        hint="run `gen generate SPEC` again") from None
    return server


def listening_port(server: OtaServer) -> int:
    sock: socket.socket = server.socket
    return int(sock.getsockname()[1])
