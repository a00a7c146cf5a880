"""Ending the live sessions of identities that lost their right to one, on a running Mosquitto 2.0.

Mosquitto re-reads its CRL on SIGHUP but re-checks no live TLS session, so a revoked certificate stays connected
(keepalive keeps it up for ever). The generated config loads the dynamic-security plugin on the device listener for
one thing: as ADMIN_IDENTITY, `end_sessions` creates a dynsec client of each username and deletes it again, and
deleteClient disconnects every session of that username at once (plugins/dynamic-security/clients.c at v2.0.11:
mosquitto_kick_client_by_username). The client then reconnects, and the reloaded CRL, ACL or password file decides.

Who: `usernames_to_end(before, after, index)` compares the files the broker had with the new ones: the identities
with a certificate newly on the CRL, those the new ACL or password file no longer lists (removed from the spec),
and those whose key changed since the last apply (`gen pki renew --new-key`: the keys each identity had are kept
beside the broker's files, `current_keys`). Pure: the caller reads the files.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import paho.mqtt.client as paho
from cryptography import x509

from generator.broker.install import certificate_names
from generator.broker.render import ACL_FILE, CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC, CRL_FILE, PASSWORD_FILE
from generator.core.errors import ToolError
from generator.pki.credentials import ClientCredentials
from generator.pki.index import IndexEntry

ANSWER_TIMEOUT_S = 10.0
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


@dataclass(frozen=True)
class Ended:
    username: str
    why: str                      # "revoked" | "removed" | "password changed"


def revoked_serials(crl_pem: bytes | None) -> set[int]:
    """Every serial on the CRL(s) in a crl.pem (an imported CA's file may hold two)."""
    serials: set[int] = set()
    for block in _PEM_CRL.findall(crl_pem or b""):
        serials |= {revoked.serial_number for revoked in x509.load_pem_x509_crl(block)}
    return serials


def acl_usernames(acl: bytes | None) -> set[str]:
    return {line.split(" ", 1)[1].strip() for line in (acl or b"").decode().splitlines() if line.startswith("user ")}


def password_lines(passwd: bytes | None) -> dict[str, str]:
    return dict(line.split(":", 1) for line in (passwd or b"").decode().splitlines() if ":" in line)


def current_keys(entries: Iterable[IndexEntry]) -> dict[str, str]:
    """Each device's and client's current key (SHA-256 of its public key), by username."""
    keys: dict[str, str] = {}
    for entry in entries:
        if entry.role in ("device", "client") and entry.status == "valid" and entry.key_sha256:
            keys[entry.id] = entry.key_sha256       # in issue order: the latest wins
    return keys


def re_keyed(keys_before: Mapping[str, str] | None, keys_now: Mapping[str, str]) -> list[str]:
    """The identities whose key changed since the last apply (`gen pki renew --new-key`); none when the keys at the
    last apply are unknown (None)."""
    if keys_before is None:
        return []
    return sorted(user for user, key in keys_now.items() if user in keys_before and keys_before[user] != key)


def usernames_to_end(before: Mapping[str, bytes | None], after: Mapping[str, bytes], entries: Iterable[IndexEntry],
                     *, keys_before: Mapping[str, str] | None = None, keep: Iterable[str] = ()) -> list[Ended]:
    """The usernames whose live sessions must end, given the broker files it had (`before`, by file name; None for
    a file it had not), the new ones (`after`) and the keys at the last apply (`keys_before`, None: unknown).
    `keep`: never these (the administrator itself)."""
    entries = list(entries)
    ended: dict[str, str] = {}
    newly_revoked = revoked_serials(after.get(CRL_FILE)) - revoked_serials(before.get(CRL_FILE))
    for entry in entries:
        if entry.serial in newly_revoked and entry.role in ("device", "client"):
            ended.setdefault(entry.id, "revoked")
    for username in re_keyed(keys_before, current_keys(entries)):
        ended.setdefault(username, "new key")
    if before.get(ACL_FILE) is not None:
        for username in sorted(acl_usernames(before.get(ACL_FILE)) - acl_usernames(after.get(ACL_FILE))):
            ended.setdefault(username, "removed")
    old_passwords, new_passwords = password_lines(before.get(PASSWORD_FILE)), password_lines(after.get(PASSWORD_FILE))
    for username, line in sorted(old_passwords.items()):
        if new_passwords.get(username) != line:
            ended.setdefault(username, "removed" if username not in new_passwords else "password changed")
    kept = set(keep)
    return [Ended(username, why) for username, why in sorted(ended.items()) if username not in kept]


def kick_commands(usernames: Iterable[str]) -> list[dict[str, str]]:
    """The dynsec commands that end every session of each username: a client of that name made and deleted (a
    client it already had is deleted, which ends its sessions the same way)."""
    commands: list[dict[str, str]] = []
    for username in usernames:
        commands += [{"command": "createClient", "username": username},
                     {"command": "deleteClient", "username": username}]
    return commands


def end_sessions(usernames: list[str], *, host: str, port: int, admin: ClientCredentials,
                 broker_name: str) -> None:
    """Connects as the administrator and ends every live session of `usernames`. Raises ToolError when the broker
    does not take the commands (no dynamic-security plugin, an old ACL without the administrator)."""
    if not usernames:
        return
    answers: "queue.Queue[bytes]" = queue.Queue()
    connected: "queue.Queue[str]" = queue.Queue()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=admin.name, protocol=paho.MQTTv311)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=admin.ca_pem.decode())
    context.check_hostname = False        # the chain is verified; the name is checked below (host may be an address)
    if admin.cert_pem is not None and admin.key_pem is not None:
        _load_chain(context, admin.cert_pem, admin.key_pem)
    client.tls_set_context(context)
    if admin.password is not None:
        client.username_pw_set(admin.name, admin.password)
    client.on_connect = lambda c, _u, _f, reason, _p: connected.put(str(reason))
    client.on_disconnect = lambda c, _u, _f, reason, _p: connected.put(f"disconnected ({reason})")
    client.on_subscribe = lambda c, _u, _m, codes, _p: connected.put(
        "subscribed" if all(not code.is_failure for code in codes) else "subscription refused")
    client.on_message = lambda c, _u, message: answers.put(bytes(message.payload))
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as error:
        raise ToolError(f"cannot reach the broker at {host}:{port} to end sessions: {error}",
                        hint="is it running? give --broker HOST:PORT") from None
    client.loop_start()
    try:
        outcome = _next(connected)
        if outcome != "Success":
            raise ToolError(f"the broker refused {admin.name}'s login ({outcome}) at {host}:{port}",
                            hint="install the files gen generate wrote (its ACL and password file name "
                                 f"{admin.name}), reload the broker, and try again")
        if not certificate_names(client.socket(), broker_name):
            raise ToolError(f"the broker at {host}:{port} shows a certificate that does not name {broker_name}")
        client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)
        if _next(connected) != "subscribed":
            raise ToolError("the broker refused the dynamic-security answers")
        correlation = secrets.token_hex(8)
        commands = kick_commands(usernames)
        for command in commands:
            command["correlationData"] = correlation
        client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}).encode(), qos=1)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            try:
                answer = json.loads(answers.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise ToolError(f"the broker did not answer the session commands within {ANSWER_TIMEOUT_S:.0f} s",
                                hint="its config must load the dynamic-security plugin (gen generate writes it; "
                                     "see build/broker/README.md), or end the sessions by restarting it") from None
            except ValueError:
                continue
            responses = [r for r in answer.get("responses", []) if r.get("correlationData") == correlation]
            if not responses:
                continue
            failed = [r for r in responses if r.get("command") == "deleteClient" and r.get("error")]
            if failed:
                raise ToolError(f"the broker could not end a session: {failed[0].get('error')}")
            return
    finally:
        client.disconnect()
        client.loop_stop()


def _next(events: "queue.Queue[str]") -> str:
    try:
        return events.get(timeout=ANSWER_TIMEOUT_S)
    except queue.Empty:
        return "no answer"


def _load_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:      # 0700: the key never sits where others can read it
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_bytes(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        context.load_cert_chain(cert, key)
