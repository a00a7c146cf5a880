"""`gen ota serve` under slow and greedy clients (real TLS, no broker): a client that trickles its request is cut
at the deadline, and the connection caps hold, overall and per certificate. The deadlines and caps are the
server's own, made short or small here so a test need not wait minutes."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

from conftest import WAIT_S, client_tls_context
from generator.ota.serve import listening_port, open_server, server_files
from generator.pki.spec_credentials import spec_credentials
from test_ota_serve import fetch, project, staged  # noqa: F401  (project: the module's fixture)

HEAD_DEADLINE_S = 1.0


@contextlib.contextmanager
def serving(spec, **limits):
    lines: list[str] = []
    server = open_server(server_files(spec, spec.default_out_dir), bind="127.0.0.1", port=0, log=lines.append,
                         **limits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, lines
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def device_tls(server, spec, device_id: str) -> ssl.SSLSocket:
    context = client_tls_context(spec_credentials(spec).devices[device_id])
    raw = socket.create_connection(("127.0.0.1", listening_port(server)), timeout=WAIT_S)
    return context.wrap_socket(raw, server_hostname="localhost")


def closed_by_server(sock, within_s: float) -> bool:
    """Whether the server closes `sock` within `within_s` s (we send nothing meanwhile)."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    except (TimeoutError, socket.timeout):
        return False


def test_a_client_that_trickles_its_request_is_cut_at_the_deadline(project):
    with serving(project, head_deadline_s=HEAD_DEADLINE_S) as (server, lines):
        with device_tls(server, project, "sensor-a") as tls:
            started = time.monotonic()
            tls.settimeout(0.3)
            cut = False
            for byte in b"GET /sensor-a/" + b"x" * 100:          # one byte every 0.3 s: never a whole request
                try:
                    tls.sendall(bytes([byte]))
                    if tls.recv(1) == b"":
                        cut = True
                        break
                except (TimeoutError, socket.timeout):
                    continue
                except (ConnectionError, ssl.SSLError):
                    cut = True
                    break
                if time.monotonic() - started > HEAD_DEADLINE_S + 5:
                    break
        assert cut, "the server still holds the connection"
        assert time.monotonic() - started < HEAD_DEADLINE_S + 5
    assert any("deadline for a request's head" in line for line in lines), lines


def test_no_more_connections_than_the_cap_are_held_open(project):
    with serving(project, max_connections=3) as (server, lines):
        idle = [socket.create_connection(("127.0.0.1", listening_port(server)), timeout=WAIT_S) for _ in range(3)]
        try:
            time.sleep(0.3)                                       # the three hold their slots (in the handshake)
            extra = socket.create_connection(("127.0.0.1", listening_port(server)), timeout=WAIT_S)
            assert closed_by_server(extra, WAIT_S)
            extra.close()
        finally:
            for sock in idle:
                sock.close()
        path, data = staged(project, "sensor-a")
        time.sleep(0.3)                                           # their slots are free again
        assert fetch(server, client_tls_context(spec_credentials(project).devices["sensor-a"]), path) == (200, data)
    assert any("3 connections at once already" in line for line in lines), lines


def test_one_certificate_cannot_take_every_connection(project):
    with serving(project, max_per_device=2) as (server, lines):
        held = [device_tls(server, project, "sensor-a") for _ in range(2)]
        try:
            time.sleep(0.3)
            third = device_tls(server, project, "sensor-a")
            assert closed_by_server(third, WAIT_S)
            third.close()
            path, data = staged(project, "sensor-b")
            assert fetch(server, client_tls_context(spec_credentials(project).devices["sensor-b"]), path) == (200, data)
        finally:
            for sock in held:
                sock.close()
    assert any("2 connections of that certificate at once already" in line for line in lines), lines
