"""What the provisioning tests share: an example project whose devices make their own key, the real broker with its
bootstrap listener, the real provisioning service (in this process, on its own thread, or as `gen provision serve`),
simulated devices whose flash survives kill -9, and the index to check the outcome against.

    world = ProvisionWorld.create(tmp_path, "arduino-mtls")
    with world.broker(), world.service():
        with world.device() as device:
            device.wait_for(STEP.format(5))
    world.assert_one_identity(device_id)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from conftest import MqttSession, client_tls_context, find_free_port, paho_client
from generator.broker.runner import RunningBroker, running_broker
from generator.core.paths import PROJECT_ROOT
from generator.firmware.fingerprint import firmware_fingerprint
from generator.output.generate import generate
from generator.output.layout import firmware_dir
from generator.output.manifest import read_manifest
from generator.pki.credentials import ClientCredentials
from generator.pki.index import IndexEntry
from generator.pki.spec_identities import open_spec_pki
from generator.spec.provisioning_protocol import bootstrap_username
from generator.broker.install import BrokerReload
from generator.provision.service import ProvisioningService, ServiceOptions
from generator.simulate.clock import shifted_clock, shifted_environment
from generator.simulate.device_runs import BrokerAddress, nvs_images, plan_runs
from generator.simulate.run import compile_devices
from generator.spec import PROVISIONER_IDENTITY, Spec, load_spec
from simulate_support import SimDevice

EXAMPLES_DIR = PROJECT_ROOT / "projects" / "examples"
STEP = r"\[cred\] step {}:"
CONNECTED_AS_ITSELF = r"\[mqtt\] connected to mqtt\.example\.com:8883 as "
LIFECYCLE_WAIT_S = 40.0        # an upper bound for a provisioning round trip under load; never a timed assertion
_binaries: dict[str, Path] = {}   # by firmware fingerprint: one host build per distinct firmware per session


def own_key_spec_text(example: str, *, secrets: str, validity_days: int, renew_before_days: int,
                      device_ids: tuple[str, ...] = ()) -> str:
    """projects/examples/<example>'s spec with devices that make their own key, short-lived certificates."""
    text = (EXAMPLES_DIR / example / "device.yaml").read_text()
    text = re.sub(r"(?m)^secrets: \w+$", f"secrets: {secrets}", text)
    text += (f"pki:\n  key_origin: device\n  validity_days: {validity_days}\n"
             f"  renew_before_days: {renew_before_days}\n")
    if device_ids:
        head, _, _ = text.partition("\ndevice:\n")
        tail = text.split("\ndevice:\n", 1)[1]
        tail = re.sub(r"(?m)^  id: .*\n", "", tail)
        text = head + "\ndevices:\n" + "".join(f"  - id: {device_id}\n" for device_id in device_ids) + tail
    return text


@dataclass
class ProvisionWorld:
    spec: Spec
    out_dir: Path
    log: list[str] = field(default_factory=list)     # the service's lines, every run of it
    days_ahead: float = 0.0
    running: RunningBroker | None = None
    _service: tuple[threading.Event, threading.Thread] | None = None
    _ports: tuple[int, int] = (0, 0)

    @classmethod
    def create(cls, tmp_path: Path, example: str, *, secrets: str = "nvs", validity_days: int = 3,
               renew_before_days: int = 1, device_ids: tuple[str, ...] = (), target: str | None = None,
               security: str = "") -> "ProvisionWorld":
        """`target`: the example on another target; `security`: a `security:` section added to its spec."""
        directory = tmp_path / example
        shutil.copytree(EXAMPLES_DIR / example, directory, ignore=shutil.ignore_patterns("pki", "build"))
        text = own_key_spec_text(example, secrets=secrets, validity_days=validity_days,
                                 renew_before_days=renew_before_days, device_ids=device_ids)
        if target:
            text = re.sub(r"(?m)^target: [\w-]+$", f"target: {target}", text)
        (directory / "device.yaml").write_text(text + security)
        spec = load_spec(directory / "device.yaml")
        out = directory / "build"
        generate(spec, out)
        return cls(spec, out, _ports=(find_free_port(), find_free_port()))

    @property
    def flash_root(self) -> Path:
        """The simulated boards' flash: outside the project (it holds the keys the devices made)."""
        return self.out_dir.parent.parent / "flash"

    @property
    def device_id(self) -> str:
        return self.spec.devices[0].id

    # -------------------------------------------------------------------------- the broker

    @contextlib.contextmanager
    def broker(self) -> Iterator[RunningBroker]:
        env = shifted_environment(dt.timedelta(days=self.days_ahead)) if self.days_ahead else None
        with running_broker(self.out_dir / "broker", port=self._ports[0], provision_port=self._ports[1],
                            bind_address="127.0.0.1", env=env) as broker:
            self.running = broker
            try:
                yield broker
            finally:
                self.running = None

    # -------------------------------------------------------------------------- the service

    def service_options(self) -> ServiceOptions:
        assert self.running is not None, "start the broker first"
        return ServiceOptions(broker_host="127.0.0.1", broker_port=self.running.port,
                              broker_dir=self.running.private_dir, reload=BrokerReload(pid_file=self.running.pid_file),
                              tls_name=self.spec.broker.host, per_device_interval_s=0.0)

    def start_service(self) -> None:
        assert self._service is None, "the service runs already"
        service = ProvisioningService(self.spec, self.service_options(), on_log=self.log.append,
                                      clock=shifted_clock(dt.timedelta(days=self.days_ahead)))
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        self._service = (stop, thread)
        self.wait_for_log("provision republished")

    def stop_service(self) -> None:
        assert self._service is not None
        stop, thread = self._service
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the provisioning service did not stop"
        self._service = None

    @contextlib.contextmanager
    def service(self) -> Iterator[None]:
        self.start_service()
        try:
            yield
        finally:
            if self._service is not None:
                self.stop_service()

    def wait_for_log(self, pattern: str, *, after: int = 0, timeout: float = LIFECYCLE_WAIT_S) -> str:
        """The first service line from index `after` on that matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log[after:]:
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"the service never logged /{pattern}/; it logged:\n" + "\n".join(self.log[-30:]))

    # -------------------------------------------------------------------------- devices

    def binary(self, device_id: str) -> Path:
        digest = firmware_fingerprint(self.out_dir / firmware_dir(device_id))
        if digest not in _binaries:
            _binaries[digest] = compile_devices(self.spec, self.out_dir, [device_id], cache_dir=None)[device_id]
        return _binaries[digest]

    def device_run(self, device_id: str | None = None):
        device_id = device_id or self.device_id
        assert self.running is not None, "start the broker first"
        address = BrokerAddress(self.running.host, self.running.port, self.running.provision_port)
        (run,) = plan_runs(self.spec, [device_id], {device_id: self.binary(device_id)},
                           nvs_images(self.out_dir, read_manifest(self.out_dir)), address, flash_root=self.flash_root)
        if self.days_ahead:
            extra = tuple(shifted_environment(dt.timedelta(days=self.days_ahead)).items())
            run = dataclasses.replace(run, environment=run.environment + extra)
        return run

    def device(self, device_id: str | None = None):
        return SimDevice.start(self.device_run(device_id))

    # -------------------------------------------------------------------------- speaking the protocol directly

    def trust_pem(self) -> bytes:
        """What the devices trust to verify the broker."""
        return (self.out_dir / "devices" / self.device_id / "ca.pem").read_bytes()

    @contextlib.contextmanager
    def bootstrap_session(self, device_id: str | None = None, *, password: str | None = None
                          ) -> Iterator[MqttSession]:
        """An MQTT 3.1.1 session over the bootstrap listener as `<id>@bootstrap` with its real password (what a
        device on first boot has, and what a thief of that password has)."""
        device_id = device_id or self.device_id
        secret = password if password is not None else open_spec_pki(self.spec, create=False).bootstrap_secret(device_id)
        login = ClientCredentials(bootstrap_username(device_id), self.trust_pem(), None, None, secret)
        assert self.running is not None and self.running.provision_port is not None, "start the broker first"
        with self._session(login, self.running.provision_port) as session:
            yield session

    @contextlib.contextmanager
    def identity_session(self, name: str, *, cert_pem: bytes | None = None, key_pem: bytes | None = None
                         ) -> Iterator[MqttSession]:
        """An MQTT 3.1.1 session over the device listener with a certificate: an identity of the PKI by name
        (`backend`), or the given cert and key (a device's own)."""
        if cert_pem is None:
            identity = open_spec_pki(self.spec, create=False).identity(f"client/{name}")
            cert_pem, key_pem = identity.cert_path.read_bytes(), identity.key_path.read_bytes()
        assert self.running is not None, "start the broker first"
        with self._session(ClientCredentials(name, self.trust_pem(), cert_pem, key_pem, None), self.running.port) as s:
            yield s

    @contextlib.contextmanager
    def _session(self, login: ClientCredentials, port: int) -> Iterator[MqttSession]:
        assert self.running is not None
        mqtt, connacks = paho_client(login, client_tls_context(login, max_version=None))
        session = MqttSession(mqtt)
        session.connacks = connacks            # type: ignore[attr-defined]   (disconnects show up here too)
        mqtt.connect(self.running.host, port, keepalive=30)
        mqtt.loop_start()
        try:
            code = connacks.get(timeout=LIFECYCLE_WAIT_S)
            assert code == "Success", f"{login.name} was refused ({code})"
            yield session
        finally:
            mqtt.disconnect()
            mqtt.loop_stop()

    # -------------------------------------------------------------------------- the outcome

    def device_serials(self) -> list[int]:
        """Every device certificate the index records (any id): what "no certificate was issued" compares."""
        store = open_spec_pki(self.spec, create=False)
        return sorted(entry.serial for entry in store.entries() if entry.role == "device")

    def entries(self, device_id: str | None = None) -> list[IndexEntry]:
        store = open_spec_pki(self.spec, create=False)
        return [entry for entry in store.entries() if entry.role == "device" and entry.id == (device_id or self.device_id)]

    def assert_one_identity(self, device_id: str | None = None) -> IndexEntry:
        """Exactly one certificate of the device is valid (confirmed, unrevoked); every other one is revoked."""
        entries = self.entries(device_id)
        valid = [entry for entry in entries if entry.status == "valid"]
        assert len(valid) == 1 and valid[0].confirmed_at is not None, entries
        assert all(entry.status == "revoked" for entry in entries if entry is not valid[0]), entries
        return valid[0]
