"""Running a real local RabbitMQ cluster from the files of OUT/broker/ (broker.engine: rabbitmq): for
`gen broker up`, `gen simulate` and the tests.

One node per spec node (`gen<i>@localhost`), each on free loopback ports (MQTT TLS, management) in a private
0700 copy: its own rabbitmq.conf with those ports, advanced.config naming the copy's certificate, key and hashed
CRL directory, the cluster's cookie in a private HOME. Erlang distribution is bound to loopback
(`inet_dist_use_interface`), on free ports, through an epmd we start on a free loopback port (and stop).
Nodes 2..N join node 1; then definitions.json is imported. Leaving the `with`, every node is stopped
(rabbitmqctl stop, then SIGKILL of what is left of its process group) and the epmd with them.

    with running_cluster(out_dir / "broker", nodes=3) as cluster:
        cluster.nodes[0].port ... cluster.kill(1) ... cluster.api("DELETE", "/api/users/dev-01")
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from generator.broker import rabbitmq_render as files
from generator.broker.render import CA_FILE, CERT_FILE, CRL_FILE, KEY_FILE
from generator.core.errors import ToolError, UserError
from generator.pki.crl_hash import crl_hash_file_name

RABBITMQ_BIN = Path(os.environ.get("GEN_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
INSTALL_HINT = "install it: sudo apt-get install rabbitmq-server (gen runs /usr/lib/rabbitmq/bin/rabbitmq-server)"
STARTUP_TIMEOUT_S = 150
STOP_TIMEOUT_S = 30
# Several VMs on a few shared cores: no busy waiting; few async threads.
ERL_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none +A 8 -kernel inet_dist_use_interface {127,0,0,1}"
LOCAL_WATERMARK = "1GB"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_rabbitmq() -> Path:
    server = RABBITMQ_BIN / "rabbitmq-server"
    if not server.is_file() or not shutil.which("epmd"):
        raise ToolError("RabbitMQ (rabbitmq-server) is not installed", hint=INSTALL_HINT)
    return server


@dataclass
class LocalNode:
    index: int                      # 1-based
    name: str                       # gen<i>@localhost
    port: int                       # MQTT over TLS
    management_port: int
    dist_port: int
    directory: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "log" / f"{self.name}.log"


@dataclass
class ClusterAccess:
    """What gen broker apply needs of a running cluster: the nodes' hashed CRL directory and their management API.
    It ends sessions by deleting users, not by DELETE /api/connections/<name>: the management statistics list a
    connection only after collect_statistics_interval (30 s), so a session opened just before would survive."""
    crl_dir: Path
    management_ports: list[int]
    admin_password: str
    down: set[int] = field(default_factory=set)      # management ports of nodes known to be down

    def to_json(self) -> dict:
        return {"crl_dir": str(self.crl_dir), "management_ports": self.management_ports}

    @property
    def files_dir(self) -> Path:
        """The nodes' shared files (/etc/rabbitmq/gen on installed nodes): CA, certificate, key, crl/, and the
        record of the keys each identity had at the last apply."""
        return self.crl_dir.parent

    @classmethod
    def read(cls, record: Path, broker_dir: Path) -> "ClusterAccess | None":
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            return None
        password = (broker_dir / files.ADMIN_PASSWORD_FILE).read_text().strip()
        return cls(Path(data["crl_dir"]), [int(port) for port in data["management_ports"]], password)

    def install_crl(self, crl_pem: bytes) -> None:
        """The new CRL in the nodes' hashed CRL directory, replaced atomically: the next handshake uses it."""
        target = self.crl_dir / crl_hash_file_name(crl_pem)
        temporary = target.with_suffix(".new")
        temporary.write_bytes(crl_pem)
        os.replace(temporary, target)

    def api(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        token = base64.b64encode(f"{files.ADMIN_IDENTITY}:{self.admin_password}".encode()).decode()
        last: OSError | None = None
        for port in self.management_ports:
            if port in self.down:
                continue
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
            request.add_header("Authorization", f"Basic {token}")
            if body is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()
            except OSError as error:        # that node is down: ask the next
                last = error
        raise ToolError(f"no node's management API answered ({last})", hint="is the cluster running?")


@dataclass
class LocalCluster(ClusterAccess):
    directory: Path = Path()
    nodes: list[LocalNode] = field(default_factory=list)
    epmd: subprocess.Popen | None = None
    killed: set[int] = field(default_factory=set)

    host = "127.0.0.1"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def to_json(self) -> dict:
        return {**super().to_json(), "mqtt_nodes": [[self.host, port] for port in self.ports]}

    def ctl(self, node: LocalNode, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.name, *args], env=node.env,
                              capture_output=True, text=True, timeout=timeout)

    def kill(self, index: int) -> None:
        """kill -9 of node `index`'s VM: a crash, not a stop."""
        node = self.nodes[index - 1]
        with contextlib.suppress(ProcessLookupError, OSError, ValueError):   # the VM; its script reaps it
            os.kill(int((node.directory / "node.pid").read_text().strip()), signal.SIGKILL)
        if node.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
        self.killed.add(index)
        self.down.add(node.management_port)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.ctl(node, "stop", timeout=STOP_TIMEOUT_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(10)      # the script exits once it has reaped its VM
            if node.process.poll() is None:
                self.kill(node.index)
        for node in self.nodes:       # what a node's VM forked into its own group (erl_child_setup, inet_gethost)
            if node.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGKILL)
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(10)


def recorded_mqtt_nodes(record: Path) -> list[tuple[str, int]]:
    """The MQTT (TLS) address of each node of a running local cluster, in node order, from its record
    (LocalCluster.to_json, written by `gen broker up`); [] when there is no record."""
    try:
        data = json.loads(record.read_text())
        return [(str(host), int(port)) for host, port in data.get("mqtt_nodes", [])]
    except (OSError, ValueError, TypeError):
        return []


def _node_conf(conf_text: str, *, port: int, management_port: int, watermark: str) -> str:
    """A node's rabbitmq.conf with loopback ports and a local memory watermark."""
    replaced = {"mqtt.listeners.ssl.default": f"127.0.0.1:{port}", "management.tcp.port": str(management_port),
                "vm_memory_high_watermark.absolute": watermark, "disk_free_limit.absolute": "200MB",
                "mqtt.num_acceptors.ssl": "4"}
    lines = []
    for line in conf_text.splitlines():
        key = line.split(" = ")[0]
        lines.append(f"{key} = {replaced[key]}" if key in replaced and " = " in line else line)
    return "\n".join(lines) + "\n"


def _prepare(broker_dir: Path, work: Path, count: int, epmd_port: int, watermark: str) -> tuple[list[LocalNode], Path]:
    node_dirs = sorted(path for path in (broker_dir / files.NODES_DIR).iterdir() if path.is_dir())
    if len(node_dirs) < count:
        raise UserError(f"{broker_dir} has {len(node_dirs)} node configs, not {count}", hint="run gen generate SPEC")
    tls = work / "tls"
    tls.mkdir(mode=0o700)
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        shutil.copyfile(broker_dir / name, tls / name)
    os.chmod(tls / KEY_FILE, 0o600)
    crl_dir = tls / files.CRL_DIR
    crl_dir.mkdir(mode=0o700)
    crl_pem = (broker_dir / CRL_FILE).read_bytes()
    (crl_dir / crl_hash_file_name(crl_pem)).write_bytes(crl_pem)
    home = work / "home"
    home.mkdir(mode=0o700)
    cookie = home / ".erlang.cookie"
    cookie.write_bytes((broker_dir / files.COOKIE_FILE).read_bytes())
    os.chmod(cookie, 0o400)
    nodes = []
    for index, node_dir in enumerate(node_dirs[:count], start=1):
        directory = work / f"gen{index}"
        directory.mkdir(mode=0o700)
        port, management_port, dist_port = _free_port(), _free_port(), _free_port()
        conf = (node_dir / files.CONF_FILE).read_text()
        (directory / files.CONF_FILE).write_text(_node_conf(conf, port=port, management_port=management_port,
                                                            watermark=watermark))
        advanced = (node_dir / files.ADVANCED_FILE).read_text().replace(str(files.INSTALL_DIR / files.CRL_DIR),
                                                                          str(crl_dir))
        (directory / files.ADVANCED_FILE).write_text(advanced.replace(str(files.INSTALL_DIR), str(tls)))
        shutil.copyfile(node_dir / files.PLUGINS_FILE, directory / files.PLUGINS_FILE)
        name = f"gen{index}@localhost"
        env = {key: value for key, value in os.environ.items() if not key.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(home), "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": str(directory / "erl_crash.dump"),   # never in the caller's folder
            "RABBITMQ_NODENAME": name, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(dist_port), "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"), "RABBITMQ_CONFIG_FILE": str(directory / files.CONF_FILE),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / files.ADVANCED_FILE),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / files.PLUGINS_FILE),
            "RABBITMQ_PID_FILE": str(directory / "node.pid"), "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        })
        (directory / "rabbitmq-env.conf").write_text("")
        nodes.append(LocalNode(index, name, port, management_port, dist_port, directory, env))
    return nodes, crl_dir


@contextlib.contextmanager
def running_cluster(broker_dir: Path, *, nodes: int, watermark: str = LOCAL_WATERMARK,
                    import_definitions: bool = True) -> Iterator[LocalCluster]:
    """A local cluster of `nodes` RabbitMQ nodes on loopback, from OUT/broker/; stopped on leaving."""
    server = find_rabbitmq()
    work = Path(tempfile.mkdtemp(prefix="gen-rabbitmq-"))
    os.chmod(work, 0o700)
    epmd_port = _free_port()
    epmd = subprocess.Popen(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cluster: LocalCluster | None = None
    try:
        local_nodes, crl_dir = _prepare(broker_dir, work, nodes, epmd_port, watermark)
        password = (broker_dir / files.ADMIN_PASSWORD_FILE).read_text().strip()
        cluster = LocalCluster(crl_dir, [node.management_port for node in local_nodes], password,
                               directory=work, nodes=local_nodes, epmd=epmd)
        time.sleep(0.3)      # epmd listening
        for node in local_nodes:
            node.directory.joinpath("log").mkdir()
            with open(node.directory / "stdout.log", "wb") as out:
                node.process = subprocess.Popen([str(server)], env=node.env, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        for node in local_nodes:
            _await(cluster, node)
        first = local_nodes[0]
        for node in local_nodes[1:]:
            for step in (("stop_app",), ("join_cluster", first.name), ("start_app",)):
                _check(cluster.ctl(node, *step), node, " ".join(step))
        if import_definitions:
            _check(cluster.ctl(first, "import_definitions", str(broker_dir / files.DEFINITIONS_FILE)), first,
                   "import_definitions")
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            epmd.kill()
            epmd.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _await(cluster: LocalCluster, node: LocalNode) -> None:
    """Until the node has booted (await_startup fails at once while the VM has not registered with epmd yet)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    result = None
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            break
        try:
            result = cluster.ctl(node, "await_startup", "--timeout", str(int(deadline - time.monotonic()) + 1),
                                 timeout=deadline - time.monotonic() + 10)
        except subprocess.TimeoutExpired:
            break
        if result.returncode == 0:
            return
        time.sleep(1)
    log = (node.directory / "stdout.log").read_text(errors="replace")[-2000:]
    why = result.stderr.strip()[-300:] if result is not None else ""
    raise ToolError(f"RabbitMQ node {node.name} did not start in {STARTUP_TIMEOUT_S} s: {why}\n{log}",
                    hint=f"its log: {node.log_path}")


def _check(result: subprocess.CompletedProcess, node: LocalNode, what: str) -> None:
    if result.returncode != 0:
        raise ToolError(f"rabbitmqctl {what} on {node.name} failed: {(result.stderr or result.stdout).strip()[-800:]}")
