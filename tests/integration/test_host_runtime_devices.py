"""The host runtime runs firmware written against the real ESP32 APIs on Linux, against a real
Mosquitto over mutual TLS, with the device-side behaviour (mbedTLS 2.28 verification, PubSubClient 2.8
limits, esp-mqtt events, NVS images) the generated firmware relies on."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from generator.simulate import host_build
from generator.core.errors import ToolError
from generator.simulate.host_build import compile_firmware
from host_runtime_support import Device, Pki, make_pki, nvs_image, start_broker, tls_context

pytestmark = pytest.mark.slow

PROBES = Path(__file__).parent.parent / "host_firmware"
DEVICE = "device-001"
SUB_TOPIC = f"devices/{DEVICE}/cmd"
PUB_TOPIC = f"devices/{DEVICE}/telemetry"
BLOB = bytes(range(256)) * 20  # 5120 bytes: stored in more than one chunk, past the 4000-byte string limit


@pytest.fixture(scope="session")
def host_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("host-build-cache")


@pytest.fixture(scope="session")
def arduino_probe(host_cache) -> Path:
    return compile_firmware(PROBES / "arduino_probe", "arduino", host_cache)


@pytest.fixture(scope="session")
def idf_probe(host_cache) -> Path:
    return compile_firmware(PROBES / "idf_probe", "espidf", host_cache)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def broker(pki):
    # Not under pytest's 0700 tmp tree: a broker started as root reads its files as user mosquitto.
    directory = Path(tempfile.mkdtemp(prefix="gen-host-broker-"))
    os.chmod(directory, 0o755)
    b = start_broker(directory, pki)
    yield b
    b.stop()
    shutil.rmtree(directory, ignore_errors=True)


def probe_nvs(path: Path, pki: Pki, port: int, **overrides) -> Path:
    entries: dict[str, object] = {
        "host": "localhost", "port": port, "ca": pki.ca.cert_pem,
        "cert": pki.device.cert_pem, "key": pki.device.key_pem,
        "client_id": DEVICE, "sub": SUB_TOPIC, "pub": PUB_TOPIC, "blob": BLOB,
    }
    entries.update(overrides)
    return nvs_image(path, "probe", {k: v for k, v in entries.items() if v is not None})


class Backend:
    """A paho client with the backend's certificate, subscribed to the device's topics."""

    def __init__(self, pki: Pki, port: int, directory: Path):
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="backend-test")
        self.client.tls_set_context(tls_context(pki, directory, pki.backend))
        subscribed = queue.Queue()
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *a: subscribed.put(True)
        self.client.connect("localhost", port)
        self.client.loop_start()
        self.client.subscribe(f"devices/{DEVICE}/#", qos=1)
        subscribed.get(timeout=5)

    def expect(self, topic: str, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got_topic, payload = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            if got_topic == topic and payload != b"offline":
                return payload
        raise AssertionError(f"nothing on {topic}")

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_happy_path(executable: Path, pki: Pki, broker, tmp: Path, big_inbound: bool) -> dict:
    backend = Backend(pki, broker.mtls_port, tmp)
    device = Device(executable, {"GEN_SIM_NVS": str(probe_nvs(tmp / "nvs.bin", pki, broker.mtls_port))})
    try:
        device.wait_for("CONNECTED")
        hello = backend.expect(PUB_TOPIC)
        if big_inbound:
            backend.send(SUB_TOPIC, b"B" * 400)  # larger than PubSubClient's 256-byte buffer
        backend.send(SUB_TOPIC, b"ping-1")
        rx = device.wait_for(f"RX {SUB_TOPIC}")
        time.sleep(0.2)
        stopped = device.stop()
    finally:
        device.kill()
        backend.close()
    return {"hello": hello, "rx": rx, "lines": device.lines, "stopped": stopped}


@pytest.fixture(scope="module")
def arduino_run(arduino_probe, pki, broker, tmp_path_factory) -> dict:
    return run_happy_path(arduino_probe, pki, broker, tmp_path_factory.mktemp("arduino-run"), big_inbound=True)


@pytest.fixture(scope="module")
def idf_run(idf_probe, pki, broker, tmp_path_factory) -> dict:
    return run_happy_path(idf_probe, pki, broker, tmp_path_factory.mktemp("idf-run"), big_inbound=False)


# ---- the secure link works, both flavours ---------------------------------------------------------------

def test_arduino_device_publishes_over_mutual_tls_and_the_backend_receives_it(arduino_run):
    assert arduino_run["hello"] == f"hello from {DEVICE} #1".encode()


def test_arduino_device_receives_a_command_the_backend_publishes(arduino_run):
    assert arduino_run["rx"] == f"RX {SUB_TOPIC} ping-1"


def test_idf_device_publishes_over_mutual_tls_and_the_backend_receives_it(idf_run):
    assert idf_run["hello"] == b"hello from idf"


def test_idf_device_receives_a_command_as_an_mqtt_event_data(idf_run):
    assert idf_run["rx"] == f"RX {SUB_TOPIC} ping-1"


def test_sigterm_stops_a_device_with_one_line_and_exit_code_0(arduino_run, idf_run):
    # The runtime keeps no MQTT counts (its PubSubClient and esp-mqtt are plain libraries): it only says it stopped.
    assert arduino_run["stopped"] == "[sim] stopped by SIGTERM" == idf_run["stopped"]
    assert not any("summary" in line for line in arduino_run["lines"] + idf_run["lines"])


# ---- NVS: the image esp-idf-nvs-partition-gen writes ----------------------------------------------------

def test_preferences_read_string_blob_and_u16_from_the_nvs_image(arduino_run, broker, pki):
    nvs_line = next(line for line in arduino_run["lines"] if line.startswith("NVS "))
    assert f"host=localhost port={broker.mtls_port} ca_len={len(pki.ca.cert_pem)}" in nvs_line
    assert f"blob_len={len(BLOB)} blob_sum={sum(BLOB)} id_len={len(DEVICE) + 1} has_key=1" in nvs_line


def test_nvs_get_str_and_blob_read_the_image_with_the_real_length_semantics(idf_run, broker):
    nvs_line = next(line for line in idf_run["lines"] if "NVS " in line)
    assert f"host=localhost port={broker.mtls_port} blob_len={len(BLOB)} blob_sum={sum(BLOB)}" in nvs_line
    assert "small=ESP_ERR_NVS_INVALID_LENGTH needed=10" in nvs_line  # "localhost" + NUL


# ---- PubSubClient 2.8 semantics --------------------------------------------------------------------------

def test_pubsubclient_refuses_a_publish_one_byte_larger_than_its_buffer(arduino_run):
    assert "PUBLISH_OVERSIZE 0" in arduino_run["lines"]
    assert "PUBLISH_FITS 1" in arduino_run["lines"]


def test_pubsubclient_drops_an_inbound_message_larger_than_its_buffer(arduino_run):
    rx_lines = [line for line in arduino_run["lines"] if line.startswith("RX ")]
    assert rx_lines == [f"RX {SUB_TOPIC} ping-1"]


def test_pubsubclient_state_is_5_when_the_broker_refuses_the_password(arduino_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.password_port, cert=None, key=None,
                    user="alice", **{"pass": "wrong password"})
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        line = device.wait_for("CONNECT_FAILED")
        assert line.startswith("CONNECT_FAILED state=5 tls=0")
        device.stop()
        assert "CONNECTED" not in device.lines
    finally:
        device.kill()


def test_pubsubclient_with_the_right_password_connects_on_the_password_listener(arduino_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.password_port, cert=None, key=None,
                    user="alice", **{"pass": "correct horse"})
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        device.wait_for("CONNECTED")
    finally:
        device.kill()


def test_pubsubclient_state_is_minus_2_when_nothing_listens(arduino_probe, pki, tmp_path):
    from host_runtime_support import free_port

    nvs = probe_nvs(tmp_path / "nvs.bin", pki, free_port())
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        assert device.wait_for("CONNECT_FAILED").startswith("CONNECT_FAILED state=-2 tls=-1")
    finally:
        device.kill()


# ---- TLS verification as on the device ----------------------------------------------------------------------

def test_arduino_device_with_a_foreign_ca_shows_the_mbedtls_verify_failure_and_never_connects(
        arduino_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.mtls_port, ca=pki.foreign_ca.cert_pem)
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        line = device.wait_for("CONNECT_FAILED")
        assert "state=-2 tls=-9984 X509 - Certificate verification failed" in line
        assert "The certificate is not correctly signed by the trusted CA" in line
        device.stop()
        assert "CONNECTED" not in device.lines
    finally:
        device.kill()


def test_idf_device_with_a_foreign_ca_gets_mqtt_event_error_with_the_verify_failure(idf_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.mtls_port, ca=pki.foreign_ca.cert_pem)
    device = Device(idf_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        line = device.wait_for("MQTT_EVENT_ERROR")
        assert "esp_tls=ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED stack=-0x2700 flags=0x8" in line
        device.wait_for("E (")  # esp-tls logs the handshake failure like the device
        assert any("mbedtls_ssl_handshake returned -0x2700" in l for l in device.lines)
        device.stop()
        assert not any(l.endswith("probe: CONNECTED") for l in device.lines)
    finally:
        device.kill()


def test_idf_device_reports_a_connack_refusal_as_connection_refused(idf_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.password_port, cert=None, key=None)
    device = Device(idf_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        assert "MQTT_EVENT_ERROR refused rc=5" in device.wait_for("MQTT_EVENT_ERROR")
        device.wait_for("DISCONNECTED")
    finally:
        device.kill()


def test_a_server_cert_with_only_an_ip_address_san_is_rejected_when_dialled_by_ip(arduino_probe, pki, broker, tmp_path):
    # mbedTLS 2.28 (Arduino-ESP32 2.0.x) ignores iPAddress SANs: the dotted name matches nothing.
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.ip_only_port, host="127.0.0.1")
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        line = device.wait_for("CONNECT_FAILED")
        assert "tls=-9984" in line and "The certificate Common Name (CN) does not match" in line
    finally:
        device.kill()


def test_the_same_ip_dialled_as_a_dns_name_san_connects(arduino_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.mtls_port, host="127.0.0.1")
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        device.wait_for("CONNECTED")
    finally:
        device.kill()


def test_connect_to_mapping_reaches_the_broker_and_verifies_the_dialled_name(arduino_probe, pki, broker, tmp_path):
    mapping = f"mqtt.example.com:8883:127.0.0.1:{broker.mtls_port},other.example.com:8883:127.0.0.1:{broker.mtls_port}"
    good = Device(arduino_probe, {"GEN_SIM_NVS": str(probe_nvs(tmp_path / "good.bin", pki, 8883, host="mqtt.example.com")),
                                  "GEN_SIM_CONNECT_TO": mapping})
    bad = Device(arduino_probe, {"GEN_SIM_NVS": str(probe_nvs(tmp_path / "bad.bin", pki, 8883, host="other.example.com")),
                                 "GEN_SIM_CONNECT_TO": mapping})
    try:
        good.wait_for("CONNECTED")
        assert "CN) does not match" in bad.wait_for("CONNECT_FAILED")  # reached the broker, name refused
    finally:
        good.kill()
        bad.kill()


# ---- simulation controls ---------------------------------------------------------------------------------------

def test_a_wifi_drop_disconnects_the_device_and_it_reconnects_when_the_link_returns(arduino_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.mtls_port)
    device = Device(arduino_probe, {"GEN_SIM_NVS": str(nvs), "GEN_SIM_DROP_WIFI_AFTER": "2",
                                    "GEN_SIM_WIFI_DOWN_FOR": "1"})
    try:
        device.wait_for("CONNECTED")
        assert device.wait_for("WIFI disconnected") == "WIFI disconnected reason 8"
        link_up = device.lines.index(device.wait_for("[sim] wifi link up"))
        device.wait_for("WIFI got ip", after=link_up)
        device.wait_for("CONNECTED", after=link_up)
        device.stop()
        assert device.lines.count("CONNECTED") == 2
    finally:
        device.kill()


def test_sigusr1_toggles_the_link_and_esp_mqtt_reconnects_after_it_returns(idf_probe, pki, broker, tmp_path):
    nvs = probe_nvs(tmp_path / "nvs.bin", pki, broker.mtls_port)
    device = Device(idf_probe, {"GEN_SIM_NVS": str(nvs)})
    try:
        device.wait_for("probe: CONNECTED")
        device.process.send_signal(signal.SIGUSR1)
        down = device.lines.index(device.wait_for("[sim] wifi link down"))
        assert "WIFI disconnected reason 8" in device.wait_for("WIFI disconnected", after=down)
        device.wait_for("MQTT_EVENT_ERROR transport", after=down)  # the socket was shut down under esp-mqtt
        device.process.send_signal(signal.SIGUSR1)
        up = device.lines.index(device.wait_for("[sim] wifi link up"))
        device.wait_for("WIFI got ip", after=up)
        device.wait_for("probe: CONNECTED", after=up)
        device.stop()
        assert sum(line.endswith("probe: CONNECTED") for line in device.lines) == 2
    finally:
        device.kill()


# ---- the build ---------------------------------------------------------------------------------------------------

def test_a_warm_rebuild_returns_the_cached_binary_without_compiling(arduino_probe, host_cache):
    before = arduino_probe.stat().st_mtime_ns
    assert compile_firmware(PROBES / "arduino_probe", "arduino", host_cache) == arduino_probe
    assert arduino_probe.stat().st_mtime_ns == before


def test_a_compile_error_is_a_tool_error_naming_file_and_line(host_cache, tmp_path, arduino_probe):
    project = tmp_path / "broken"
    shutil.copytree(PROBES / "arduino_probe", project)
    (project / "src" / "main.cpp").write_text("#include <Arduino.h>\nvoid setup() { int unused; }\nvoid loop() {}\n")
    with pytest.raises(ToolError) as err:
        compile_firmware(project, "arduino", host_cache)
    assert "main.cpp:2" in str(err.value) and "unused" in str(err.value)


def test_a_missing_compiler_is_a_tool_error_with_the_install_command(monkeypatch, tmp_path):
    host_build.find_toolchain.cache_clear()
    monkeypatch.setattr(host_build.shutil, "which", lambda name: None)
    try:
        with pytest.raises(ToolError) as err:
            compile_firmware(PROBES / "arduino_probe", "arduino", tmp_path)
        assert "apt-get install g++ libmbedtls-dev" in str(err.value)
    finally:
        host_build.find_toolchain.cache_clear()


def test_missing_mbedtls_headers_are_a_tool_error_with_the_install_command(tmp_path):
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\necho '<stdin>:1:10: fatal error: mbedtls/ssl.h: No such file or directory' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ToolError) as err:
        host_build.build_runtime_library(host_build.Toolchain(str(fake), str(fake), "fake 1.0"), tmp_path / "cache")
    assert "mbedTLS 2.28 development headers are missing" in str(err.value)
    assert "apt-get install g++ libmbedtls-dev" in str(err.value)


@pytest.mark.parametrize("project, framework", [("arduino_api_coverage", "arduino"), ("idf_api_coverage", "espidf")])
def test_every_listed_api_compiles_links_and_runs_up_to_the_restart(project, framework, host_cache):
    # Each coverage program calls every API templates/host/README.md lists for its flavour, then restarts.
    executable = compile_firmware(PROBES / project, framework, host_cache)
    result = subprocess.run([str(executable)], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 3, result.stdout[-2000:]
    assert "the device would reboot now" in result.stdout
    assert "the device would reboot now" in result.stdout.rstrip().splitlines()[-1]


def test_the_runtime_mqtt_libraries_call_nothing_of_the_simulator(host_cache):
    # PubSubClient and esp-mqtt are plain library code over the device APIs (Client, esp-tls, esp_timer, esp_mac):
    # the real ones could be linked in their place, and `gen simulate` would summarise the same from the log.
    library = host_build.build_runtime_library(host_build.find_toolchain(), host_cache)
    listing = subprocess.run(["nm", "-A", "--undefined-only", str(library)], capture_output=True, text=True,
                             check=True).stdout
    undefined: dict[str, set[str]] = {}
    for line in listing.splitlines():
        member, _, symbol = line.rpartition(" ")
        undefined.setdefault(member.split(":")[1], set()).add(symbol)
    for member in ("arduino_PubSubClient.o", "idf_idf_mqtt.o"):
        assert member in undefined, sorted(undefined)
        assert not {s for s in undefined[member] if s.startswith("gen_sim")}, (member, sorted(undefined[member]))
