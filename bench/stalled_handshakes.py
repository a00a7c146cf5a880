"""How long the generated Mosquitto 2.0.11 holds connections that never finish their TLS handshake, and what
max_connections does to a flood of them. Mosquitto 2.0.11 has no handshake timeout option: this measures the
built-in behaviour (a connection that has not sent a whole MQTT packet gets the default 60 s keepalive, and is
dropped after 1.5 times that, checked every 5 s).

    .venv/bin/python bench/stalled_handshakes.py --stalled 20 --max-connections 10

Starts the real broker from a temporary two-device project on 127.0.0.1; prints when each kind of stalled
connection was closed, whether a device could connect while the slots were full, and after they were freed.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from generator.cli.broker_commands import write_broker_files  # noqa: E402  (after the path set-up above)
from generator.pki.spec_credentials import spec_credentials  # noqa: E402
from generator.broker.runner import running_broker  # noqa: E402
from generator.core.mqtt_wire import MqttSession  # noqa: E402
from generator.spec import load_spec  # noqa: E402

HOST = "127.0.0.1"
LIMIT_S = 200.0

SPEC = """\
project: stalled
wifi: {{ssid: bench, password: bench-passphrase}}
broker:
  host: localhost
  names: [localhost, 127.0.0.1]
  max_connections: {max_connections}
auth: mtls
publish:
  - name: telemetry
    topic: devices/{{id}}/telemetry
devices:
  - id: sensor-a
"""


def device_connects(port: int, client, keys: Path) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=client.ca_pem.decode())
    (keys / "c.pem").write_bytes(client.cert_pem)
    (keys / "c.key").touch(mode=0o600)
    (keys / "c.key").write_bytes(client.key_pem)
    context.load_cert_chain(keys / "c.pem", keys / "c.key")
    try:
        with socket.create_connection((HOST, port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as sock:
            return MqttSession(sock).connect(client.name) == 0
    except (OSError, ssl.SSLError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stalled", type=int, default=20, help="stalled connections to open")
    parser.add_argument("--max-connections", type=int, default=10, help="the listener's max_connections")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stalled-") as directory:
        spec_path = Path(directory) / "device.yaml"
        spec_path.write_text(SPEC.format(max_connections=args.max_connections))
        spec = load_spec(spec_path)
        device = spec_credentials(spec).devices["sensor-a"]
        broker_dir = write_broker_files(spec, Path(directory) / "build")
        with running_broker(broker_dir, _free_port(), bind_address=HOST) as broker:
            stalled = []
            for index in range(args.stalled):
                sock = socket.create_connection((HOST, broker.port))
                if index % 2:   # half send the start of a TLS record and stop
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01")
                sock.settimeout(0.05)
                stalled.append(sock)
            started = time.monotonic()
            time.sleep(0.5)
            closed: dict[int, float] = {}
            _poll(stalled, closed, started)
            refused = len(closed)
            print(f"opened {args.stalled} stalled connections (half silent, half mid-ClientHello); "
                  f"max_connections {args.max_connections}")
            print(f"a device connects while they are open: {device_connects(broker.port, device, Path(directory))}")
            while len(closed) < len(stalled) and time.monotonic() - started < LIMIT_S:
                _poll(stalled, closed, started)
            denied = broker.log_text().count("denied: max_connections exceeded")
            held = sorted(closed.values())[refused:]
            print(f"refused at once (over max_connections): {refused} "
                  f"(broker log: {denied} 'denied: max_connections exceeded')")
            if held:
                print(f"held, then dropped by the broker: {len(held)}, after {held[0]:.0f} to {held[-1]:.0f} s")
            print(f"still open after {LIMIT_S:.0f} s: {len(stalled) - len(closed)}")
            print(f"a device connects after they are gone: {device_connects(broker.port, device, Path(directory))}")
            for sock in stalled:
                sock.close()
    return 0


def _poll(stalled: list[socket.socket], closed: dict[int, float], started: float) -> None:
    """Records when the broker closed each connection (a read that ends)."""
    for index, sock in enumerate(stalled):
        if index in closed:
            continue
        try:
            if sock.recv(16) == b"":
                closed[index] = time.monotonic() - started
        except socket.timeout:
            pass
        except OSError:
            closed[index] = time.monotonic() - started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
