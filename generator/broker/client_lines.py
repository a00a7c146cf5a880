"""Ready-to-paste mosquitto_sub / mosquitto_pub lines for an identity that is not a device (spec `clients:`, the
backend), with the files the PKI gave it: what the broker README and `gen pki show` print. Run from the spec's
folder (paths are relative to it); a password is read from its file by the shell, never written out here."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Sequence

from generator.pki.layout import PkiLayout
from generator.spec.model import Spec


def _relative(path: Path, spec: Spec) -> str:
    return os.path.relpath(path, spec.directory)


def _example_topic(topic_filter: str, spec: Spec) -> str:
    """A topic a filter allows, to publish to: '+' becomes the first device's id, '#' the level `test`."""
    device_id = spec.devices[0].id if spec.devices else "device"
    return "/".join(device_id if level == "+" else "test" if level == "#" else level
                    for level in topic_filter.split("/"))


def client_command_lines(spec: Spec, name: str, rules: Sequence[tuple[str, str]], auth: str) -> list[str]:
    """One mosquitto_sub line for every filter `name` may read (one connection: the broker binds the client id to
    the identity, so a second connection as `name` would replace the first), then one mosquitto_pub line per topic
    it may write; `rules` are its ACL's (access, topic) pairs, `auth` the spec's auth mode."""
    layout = PkiLayout(Path(spec.pki.dir))
    login = [f"-h {shlex.quote(spec.broker.host)}", f"-p {spec.broker.port}",
             f"--cafile {shlex.quote(_relative(layout.ca_cert, spec))}"]
    if auth in ("mtls", "mtls+password"):
        login += [f"--cert {shlex.quote(_relative(layout.cert_path('client', name), spec))}",
                  f"--key {shlex.quote(_relative(layout.key_path('client', name), spec))}"]
    if auth in ("password", "mtls+password"):
        password_file = shlex.quote(_relative(layout.password_path(name), spec))
        login += [f"-u {shlex.quote(name)}", f'-P "$(cat {password_file})"']
    login.append(f"-i {shlex.quote(name)}")
    common = " ".join(login)
    reads = [f"-t {shlex.quote(topic)}" for access, topic in rules if access in ("read", "readwrite")]
    lines = [f"mosquitto_sub {common} {' '.join(reads)} -v"] if reads else []
    lines += [f"mosquitto_pub {common} -t {shlex.quote(_example_topic(topic, spec))} -m hello"
              for access, topic in rules if access in ("write", "readwrite")]
    return lines
