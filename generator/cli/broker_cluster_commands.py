"""`gen broker up` and `gen broker apply` for broker.engine: rabbitmq (a local cluster on loopback)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote
from pathlib import Path

from generator.broker.apply import read_applied_keys, record_applied_keys
from generator.broker.rabbitmq_render import (ADMIN_IDENTITY, DEFINITIONS_FILE, definitions_of, render_rabbitmq,
                                              session_queues)
from generator.broker.rabbitmq_runner import ClusterAccess, running_cluster
from generator.broker.render import CRL_FILE
from generator.broker.sessions import current_keys, re_keyed
from generator.cli.terminal import console
from generator.core.errors import ToolError, UserError
from generator.core.files import write_tree
from generator.pki.spec_credentials import spec_credentials
from generator.output.layout import BROKER_DIR, CLUSTER_UP_RECORD
from generator.pki.spec_identities import open_spec_pki


def write_cluster_files(spec, out_dir: Path) -> Path:
    rendered = render_rabbitmq(spec, spec_credentials(spec).broker)
    broker_dir = Path(out_dir) / BROKER_DIR
    write_tree(broker_dir, rendered.files, modes=rendered.modes)
    return broker_dir


def cluster_up(spec, out_dir: Path) -> None:
    """Runs len(broker.nodes) RabbitMQ nodes on loopback in the foreground until Ctrl-C."""
    broker_dir = write_cluster_files(spec, out_dir)
    record = Path(out_dir) / CLUSTER_UP_RECORD
    if record.exists():
        raise UserError(f"gen broker up already runs a cluster for {spec.path.name} (see {record})",
                        hint="stop it first (Ctrl-C in its terminal), or give another --out")
    nodes = len(spec.broker.nodes)
    console.print(f"starting {nodes} RabbitMQ nodes on 127.0.0.1 (about 10 s each)")
    with running_cluster(broker_dir, nodes=nodes) as cluster:
        try:
            record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            record.write_text(json.dumps(cluster.to_json()))
            # The keys its identities have now: the next apply ends the sessions of those renewed with a new key.
            record_applied_keys(cluster.files_dir, open_spec_pki(spec, create=False).entries())
            for node, host in zip(cluster.nodes, spec.broker.nodes):
                console.print(f"{node.name} ({host}): MQTT over TLS on 127.0.0.1:{node.port}, "
                              f"management 127.0.0.1:{node.management_port}")
            console.print(f"cluster of {nodes} running with {broker_dir}/ (Ctrl-C stops every node)")
            while True:
                for node in cluster.nodes:
                    if node.process is not None and node.process.poll() is not None:
                        raise ToolError(f"RabbitMQ node {node.name} exited", hint=f"its log: {node.log_path}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping the cluster")
            raise
        finally:
            record.unlink(missing_ok=True)


def cluster_apply(spec, out_dir: Path) -> None:
    """The new CRL on every node, the definitions imported, and the live sessions of revoked, removed or re-keyed
    identities ended through the management API (a new CRL alone leaves them connected)."""
    record = Path(out_dir) / CLUSTER_UP_RECORD
    broker_dir = write_cluster_files(spec, out_dir)
    access = ClusterAccess.read(record, broker_dir)
    if access is None:
        raise UserError(f"no cluster of gen broker up runs for {spec.path.name} (no {record})",
                        hint=f"start it: gen broker up {spec.path.name}; for installed nodes follow "
                             f"{broker_dir}/README.md (copy crl/ to every node, then DELETE /api/connections)")
    access.install_crl((broker_dir / CRL_FILE).read_bytes())
    console.print(f"installed the CRL for every node ({access.crl_dir})")
    definitions = json.loads((broker_dir / DEFINITIONS_FILE).read_bytes())
    _import_definitions(access, definitions)
    console.print("imported definitions.json (every identity and its topic rules)")
    # A user is deleted to end its sessions: RabbitMQ then closes its live connections on every node at once,
    # whereas the management statistics (DELETE /api/connections/<name>) list a new connection only after
    # collect_statistics_interval (30 s), so a session opened just before would survive.
    entries = list(open_spec_pki(spec, create=False).entries())
    valid = {entry.id for entry in entries if entry.status in ("valid", "pending")}
    revoked = {entry.id for entry in entries if entry.status == "revoked"} - valid
    defined = {user["name"] for user in definitions["users"]}
    present = _users(access)
    removed = sorted((present - defined - {ADMIN_IDENTITY}) | (revoked & present))
    for user in removed:
        _delete_user(access, user)
        console.print(f"deleted user {user}: its live sessions ended on every node")
        for name in _delete_session_queues(access, user):
            console.print(f"  and its persistent session (queue {name}), which kept collecting its messages")
    keys_before = read_applied_keys(access.files_dir)
    if keys_before is None:
        console.print("no record of the keys this cluster had (first apply): keys renewed before now are not checked")
    rekeyed = [user for user in re_keyed(keys_before, current_keys(entries)) if user in present & defined]
    for user in rekeyed:         # deleted (its sessions end) and made again at once, with its rules
        _delete_user(access, user)
        _import_definitions(access, definitions_of(definitions, user))
        console.print(f"ended the live sessions of {user} on every node (new key): it logs in again with its new "
                      "certificate")
    record_applied_keys(access.files_dir, entries)
    if not removed and not rekeyed:
        console.print("no identity had to go")


def _import_definitions(access: ClusterAccess, definitions: dict) -> None:
    status, body = access.api("POST", "/api/definitions", json.dumps(definitions).encode())
    if status not in (200, 201, 204):
        raise ToolError(f"importing definitions.json failed ({status}): {body.decode(errors='replace')[:300]}")


def _users(access: ClusterAccess) -> set[str]:
    status, body = access.api("GET", "/api/users?columns=name")
    if status != 200:
        raise ToolError(f"the management API answered {status} to GET /api/users")
    return {row["name"] for row in json.loads(body)}


def _delete_session_queues(access: ClusterAccess, client_id: str) -> list[str]:
    """Deletes the session queues of `client_id` (every identity's client id is its name); returns those that
    were there."""
    deleted = []
    for name in session_queues(client_id):
        status, _ = access.api("DELETE", "/api/queues/%2F/" + quote(name, safe=""))
        if status in (200, 204):
            deleted.append(name)
        elif status != 404:
            raise ToolError(f"deleting queue {name} failed ({status})")
    return deleted


def _delete_user(access: ClusterAccess, user: str) -> None:
    status, _ = access.api("DELETE", "/api/users/" + quote(user, safe=""))
    if status not in (200, 204):
        raise ToolError(f"deleting user {user} failed ({status})")
