"""Device certs against the real Mosquitto 2.0.11: require_certificate + use_identity_as_username, cafile =
the store's broker cafile, crlfile = the store's CRL. Devices send only their leaf, as an ESP32 does."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from generator.pki.store import PkiStore

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto") or not shutil.which("mosquitto_pub"),
                                reason="needs mosquitto and mosquitto_pub")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1 with an mTLS listener built from the store's files."""

    def __init__(self, store: PkiStore, workdir: Path):
        broker = store.ensure_broker(["localhost", "127.0.0.1"], validity_days=365)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "cafile.pem").write_bytes(store.broker_cafile_pem())
        (workdir / "crl.pem").write_bytes(store.crl_pem())
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"user {getpass.getuser()}\n"
            "log_dest stderr\n"
            "log_type all\n"
            "persistence false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {workdir / 'cafile.pem'}\n"
            f"certfile {broker.cert_path}\n"
            f"keyfile {broker.key_path}\n"
            f"crlfile {workdir / 'crl.pem'}\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
        )
        self.log = (workdir / "mosquitto.log").open("w+")
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        for _ in range(200):
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"mosquitto exited: {self.log.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return text


def publish_as(store: PkiStore, device_id: str, port: int) -> subprocess.CompletedProcess:
    """mosquitto_pub with the device's leaf only (no chain), verifying the broker by IP like a device would."""
    identity = store.identity(device_id)
    ca = identity.cert_path.parent / "trust.pem"
    ca.write_bytes(store.device_trust_pem())
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "--cafile", str(ca), "--cert",
         str(identity.cert_path), "--key", str(identity.key_path), "-i", device_id, "-q", "1",
         "-t", f"devices/{device_id}/up", "-m", "hello"],
        capture_output=True, text=True, timeout=30)


@pytest.fixture
def store(tmp_path) -> PkiStore:
    store = PkiStore.open(tmp_path / "pki", project="mosq-demo")
    store.ensure_devices(["esp32-0001", "esp32-0002"], key_type="ec-p256", validity_days=365)
    return store


def test_mosquitto_accepts_a_device_that_sends_only_its_leaf_and_names_it_by_cn(store, tmp_path):
    broker = Broker(store, tmp_path / "broker")
    try:
        result = publish_as(store, "esp32-0001", broker.port)
    finally:
        log = broker.stop()
    assert result.returncode == 0, result.stderr
    assert "u'esp32-0001'" in log  # use_identity_as_username: the CN is the username


def test_a_revoked_device_is_refused_and_an_unrevoked_one_still_connects(store, tmp_path):
    store.revoke("esp32-0001", reason="key-compromise")
    broker = Broker(store, tmp_path / "broker")
    try:
        refused = publish_as(store, "esp32-0001", broker.port)
        accepted = publish_as(store, "esp32-0002", broker.port)
    finally:
        log = broker.stop()
    assert refused.returncode != 0
    assert "certificate verify failed" in log
    assert accepted.returncode == 0, accepted.stderr
    # OpenSSL names the reason mosquitto only logs as "verify failed"
    reason = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", tmp_path / "broker" / "cafile.pem",
                             "-CRLfile", tmp_path / "broker" / "crl.pem", store.identity("esp32-0001").cert_path],
                            capture_output=True, text=True)
    assert "certificate revoked" in reason.stdout + reason.stderr


def test_an_rsa_device_is_accepted_by_an_ec_broker(store, tmp_path):
    store.ensure_device("esp32-rsa", key_type="rsa-2048", validity_days=365)
    broker = Broker(store, tmp_path / "broker")
    try:
        result = publish_as(store, "esp32-rsa", broker.port)
    finally:
        broker.stop()
    assert result.returncode == 0, result.stderr


def test_a_device_cert_from_another_pki_is_refused(store, tmp_path):
    other = PkiStore.open(tmp_path / "other" / "pki", project="other")
    other.ensure_device("esp32-0001", key_type="ec-p256", validity_days=365)
    broker = Broker(store, tmp_path / "broker")
    try:
        identity = other.identity("esp32-0001")
        (tmp_path / "trust.pem").write_bytes(store.device_trust_pem())
        result = subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(tmp_path / "trust.pem"),
             "--cert", str(identity.cert_path), "--key", str(identity.key_path), "-t", "devices/x/up", "-m", "x"],
            capture_output=True, text=True, timeout=30)
    finally:
        broker.stop()
    assert result.returncode != 0
