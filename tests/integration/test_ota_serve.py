"""`gen ota serve` and the announcement topic, against real TLS (Python's ssl on both ends, OpenSSL) and the real
Mosquitto: a device gets images only as itself, a device without a valid client certificate gets nothing, a revoked
one is refused as soon as the CRL changes, and a device cannot announce an image to itself. `gen ota publish`
refuses images a device would refuse."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import ssl
import threading
import time

import pytest

from conftest import WAIT_S, client_tls_context, mqtt_session
from generator.cli import main
from generator.ota.announce import stage_image
from generator.core.app_image import DROM_START, IROM_START, app_description, pack_app_image
from generator.ota.serve import listening_port, open_server, server_files
from generator.pki.ota_signing import sign_image, signing_key
from generator.output.generate import generate
from generator.pki.spec_credentials import spec_credentials
from generator.pki.layout import PkiLayout
from generator.pki.spec_identities import open_spec_pki
from generator.spec import OTA_IDENTITY, load_spec

SPEC = """\
project: ota-test
target: esp32-espidf
wifi: {ssid: test-wifi, password: test-passphrase}
broker:
  host: localhost
  names: [localhost, 127.0.0.1]
auth: mtls
firmware: {version: 1.2.0}
ota: {}
devices:
  - id: sensor-a
  - id: sensor-b
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ota-serve")
    (directory / "device.yaml").write_text(SPEC)
    spec = load_spec(directory / "device.yaml")
    generate(spec, spec.default_out_dir)
    return spec


def fresh(project, tmp_path):
    """A private copy of the project (spec, PKI, OUT), for a test that revokes."""
    shutil.copytree(project.directory, tmp_path / "copy")
    spec = load_spec(tmp_path / "copy" / "device.yaml")
    generate(spec, spec.default_out_dir)
    return spec


def image(spec, version: str = "1.3.0", chip: str = "esp32") -> bytes:
    payload = b"firmware " * 1000
    desc = app_description(version=version, project_name="firmware", idf_ver="v5.5.3",
                           elf_sha256=hashlib.sha256(payload).digest())
    return pack_app_image(chip, [(DROM_START[chip], desc), (IROM_START[chip], payload)])


@contextlib.contextmanager
def serving(spec):
    lines: list[str] = []
    server = open_server(server_files(spec, spec.default_out_dir), bind="127.0.0.1", port=0, log=lines.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, lines
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def fetch(server, context: ssl.SSLContext, path: str) -> tuple[int, bytes]:
    """One GET over TLS (the server's name checked as a device checks it); (status, body)."""
    with socket.create_connection(("127.0.0.1", listening_port(server)), timeout=WAIT_S) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def staged(spec, device_id: str) -> tuple[str, bytes]:
    data = image(spec)
    sha = stage_image(spec.default_out_dir, spec.device(device_id), data)
    return f"/{device_id}/{sha}.bin", data


def test_a_device_gets_its_own_image_with_its_own_certificate(project):
    path, data = staged(project, "sensor-a")
    with serving(project) as (server, _):
        status, body = fetch(server, client_tls_context(spec_credentials(project).devices["sensor-a"]), path)
    assert (status, body) == (200, data)


def test_a_device_gets_no_image_of_another_device(project):
    path, _ = staged(project, "sensor-a")
    with serving(project) as (server, lines):
        status, body = fetch(server, client_tls_context(spec_credentials(project).devices["sensor-b"]), path)
    assert status == 403 and b"firmware" not in body
    assert any(line.startswith("403 sensor-b ") for line in lines), lines


def test_a_device_without_a_client_certificate_gets_nothing(project):
    path, _ = staged(project, "sensor-a")
    no_cert = client_tls_context(spec_credentials(project).devices["sensor-a"], with_cert=False)
    with serving(project) as (server, lines):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(server, no_cert, path)
    assert any("refused" in line and "TLS handshake failed" in line for line in lines), lines


def test_a_revoked_device_gets_nothing_from_a_server_already_running(project, tmp_path):
    spec = fresh(project, tmp_path)
    path, _ = staged(spec, "sensor-a")
    context = client_tls_context(spec_credentials(spec).devices["sensor-a"])
    with serving(spec) as (server, lines):
        assert fetch(server, context, path)[0] == 200
        time.sleep(0.01)                    # a CRL written in the same clock tick still has another size
        open_spec_pki(spec).revoke("sensor-a", reason="key-compromise")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(server, context, path)
    assert any("changed: read again" in line for line in lines), lines
    assert any("revoked" in line for line in lines), lines


def test_a_device_cannot_announce_an_image_to_itself(project, start_broker):
    # Only the backend side may write a device's OTA topic: the device itself may only read it (a device that
    # could announce to itself could be told to fetch anything the server has for it).
    broker = start_broker(project.default_out_dir / "broker")
    topic = project.device("sensor-a").ota.topic
    with mqtt_session(broker, spec_credentials(project).devices["sensor-a"]) as device:
        device.subscribe(topic, qos=1)
        device.publish(topic, b'{"version":"6.6.6"}', qos=1)
        with pytest.raises(SystemExit) as done:     # gen's OTA identity clears the announcement: our sentinel
            main(["ota", "publish", str(project.path), "--device", "sensor-a", "--clear",
                  "--broker", f"{broker.host}:{broker.port}"])
        assert done.value.code == 0
        assert [(m.topic, m.payload) for m in device.receive_until(topic)] == [(topic, b"")]


def test_gen_ota_publish_refuses_an_unsigned_image_with_exit_2(project, tmp_path, capsys):
    unsigned = tmp_path / "unsigned.bin"
    unsigned.write_bytes(image(project))
    with pytest.raises(SystemExit) as done:
        main(["ota", "publish", str(project.path), "--device", "sensor-a", "--image", str(unsigned),
              "--version", "1.3.0"])
    assert done.value.code == 2
    assert "would be refused by sensor-a: it carries no signature" in capsys.readouterr().err


def test_gen_ota_publish_refuses_an_image_for_another_chip_with_exit_2(project, tmp_path, capsys):
    signed = tmp_path / "c3.bin"
    (tmp_path / "c3.unsigned.bin").write_bytes(image(project, chip="esp32c3"))
    sign_image(tmp_path / "c3.unsigned.bin", signed, signing_key(PkiLayout(project.pki.dir)))
    with pytest.raises(SystemExit) as done:
        main(["ota", "publish", str(project.path), "--device", "sensor-a", "--image", str(signed), "--version",
              "1.3.0"])
    assert done.value.code == 2
    assert "is built for esp32c3, but device sensor-a is esp32" in capsys.readouterr().err


def test_the_signing_key_is_private_and_the_publisher_has_an_identity_of_its_own(project):
    layout = PkiLayout(project.pki.dir)
    assert layout.ota_signing_key.stat().st_mode & 0o777 == 0o600
    assert layout.private.stat().st_mode & 0o777 == 0o700
    assert layout.cert_path("client", OTA_IDENTITY).is_file()
    acl = (project.default_out_dir / "broker" / "acl").read_text()
    assert f"user {OTA_IDENTITY}\ntopic write devices/sensor-a/ota\n" in acl
    assert "user gen.doctor\ntopic deny devices/sensor-a/ota\n" in acl
