"""`gen provision serve SPEC`: the long-running process beside the broker that signs the CSRs of devices that make
their own key, confirms their switch to the new certificate, and only then revokes the old one.

    paho network thread: on_message size-checks and queues (per device, bounded); on_connect subscribes and asks
                         for a republish
    worker (run()):      one request at a time, the devices in turn (fairness.FairQueue), each within its own
                         rate and the service's -> policy.decide_* -> PKI store -> one log line (refusals
                         throttled) -> retained answer; every second: rotation requests from the index (`gen pki
                         rotate`), then at most one broker refresh (CRL + bootstrap password file written where
                         the broker reads them, a reload, then the end of every live session on a certificate it
                         revoked: generator.broker.sessions)

It connects as `gen.provisioner` (a client cert of the project's PKI) over the device listener, with a persistent
session, so requests sent while it was away are waiting when it comes back. Its state is the index: after a restart
(its own or the broker's) it republishes every open answer (a pending certificate, a rotate command), so neither
needs broker persistence. No secret is ever logged; the CSR is not logged either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paho.mqtt.client as paho

from generator.broker.install import BrokerReload, certificate_names, replace_broker_file
from generator.broker.render import BOOTSTRAP_PASSWORD_FILE, CRL_FILE, render_password_file
from generator.broker.sessions import end_sessions, usernames_to_end
from generator.core.errors import GenError, ToolError, UserError
from generator.pki.credentials import ClientCredentials
from generator.pki.issuing import utcnow
from generator.pki.spec_credentials import spec_credentials
from generator.pki.spec_identities import open_spec_pki
from generator.pki.store import PkiStore
from generator.pki.x509_facts import public_key_sha256
from generator.provision import policy
from generator.provision.fairness import DeviceBuckets, FairQueue, LogThrottle, TokenBucket
from generator.spec import ADMIN_IDENTITY, PROVISIONER_IDENTITY, Device, Spec
from generator.spec.provisioning_protocol import (
    REQUEST_FILTERS,
    REQUEST_ID_HEX_DIGITS,
    REQUEST_MAX_BYTES,
    ProtocolError,
    Request,
    Response,
    bootstrap_username,
    one_line,
    parse_request,
    parse_request_topic,
    render_response,
    response_topic,
    serial_text,
)

PER_DEVICE_QUEUE = 4          # requests of one device waiting for the worker; beyond it its newest are dropped
MAX_WAITING_DEVICES = 10_000  # devices with requests waiting (each id is a topic the ACL gives one device)
DEFAULT_RATE = 20.0           # requests per second the service handles, in the long run ...
DEFAULT_BURST = 40            # ... and at once
PER_DEVICE_RATE = 1.0         # one device's share: a device needs two requests per certificate (csr, confirm) ...
PER_DEVICE_BURST = 4          # ... and may retry a few at once
LOG_LINES_PER_WINDOW = 5      # refused, busy or dropped lines per device and decision per window; then one summary
LOG_WINDOW_S = 60.0
PER_DEVICE_ISSUE_INTERVAL_S = 10.0   # one new certificate per device per this many seconds
BUSY_RETRY_S = 5
POLL_INTERVAL_S = 1.0         # rotation requests, CRL freshness, broker refresh: at most once per this
CRL_CHECK_INTERVAL_S = 3600.0
CONNECT_TIMEOUT_S = 30.0      # the broker must accept the service within this at start (later: reconnects)
RELOAD_SETTLE_S = 0.5         # after a reload, before ending sessions: the broker has read the new CRL by then

LogSink = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ServiceOptions:
    broker_host: str                  # the name (or address) dialled; the broker's certificate must carry it
    broker_port: int
    broker_dir: Path                  # where the broker reads crl.pem and bootstrap.passwd
    reload: BrokerReload
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    per_device_interval_s: float = PER_DEVICE_ISSUE_INTERVAL_S
    tls_name: str | None = None       # the name the broker's certificate must carry, when it is not broker_host
                                      # (gen simulate dials 127.0.0.1 and verifies the spec's broker name)


# ---------------------------------------------------------------------------------------------- small parts


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    size: int                         # the payload's size as received (a too large one is not kept)


def decision_line(device_id: str, channel: str, request_id: str, decision: str, **details: str) -> str:
    """The one log line a decision gets: key=value, values from devices made printable and short."""
    parts = [f"provision id={device_id}", f"channel={channel}", f"request={request_id or '-'}", f"decision={decision}"]
    for key, value in details.items():
        text = one_line(value)
        parts.append(f'{key}="{text}"' if " " in text or not text else f"{key}={text}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- the service


@dataclass
class _State:
    refresh_broker: bool = True       # at start: the broker gets what the index says
    republish: bool = False
    announced_rotations: dict[str, dt.datetime] = field(default_factory=dict)
    index_stamp: bytes | None = None  # index.json as last seen: another gen (rotate, allow, revoke) changed it
    last_issue: dict[str, float] = field(default_factory=dict)
    last_crl_check: float = 0.0


class ProvisioningService:
    def __init__(self, spec: Spec, options: ServiceOptions, *, on_log: LogSink,
                 clock: Callable[[], dt.datetime] = utcnow):
        if not spec.provisions_devices:
            raise UserError(f"{spec.path}: no device makes its own key, so there is nothing to provision",
                            hint="set pki.key_origin: device (for the whole spec or for some devices)")
        self.spec = spec
        self.options = options
        self.on_log = on_log
        self.clock = clock
        self.devices: dict[str, Device] = {device.id: device for device in spec.devices}
        credentials = spec_credentials(spec)      # issues nothing that exists; the provisioner's own cert included
        assert credentials.provisioner is not None
        self.salt_key = credentials.broker.salt_key
        self.broker_trust_pem = credentials.provisioner.ca_pem   # what devices trust to verify the broker
        self.trust_pem = {device_id: c.ca_pem for device_id, c in credentials.devices.items()}
        self.store: PkiStore = open_spec_pki(spec, create=False, clock=clock)
        self.provisioner = self.store.identity(f"client/{PROVISIONER_IDENTITY}")
        admin = self.store.identity(f"client/{ADMIN_IDENTITY}")
        self.admin = ClientCredentials(name=ADMIN_IDENTITY, ca_pem=self.broker_trust_pem, cert_pem=admin.cert_pem,
                                       key_pem=admin.key_pem,
                                       password=self.store.password(ADMIN_IDENTITY)
                                       if any(d.uses_password for d in spec.devices) else None)
        self.queue: FairQueue[Incoming] = FairQueue(PER_DEVICE_QUEUE, MAX_WAITING_DEVICES)
        self.bucket = TokenBucket(options.rate, options.burst)
        self.device_buckets = DeviceBuckets(PER_DEVICE_RATE, PER_DEVICE_BURST)
        self.throttle = LogThrottle(LOG_LINES_PER_WINDOW, LOG_WINDOW_S)
        self.state = _State()
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._subscription: int | None = None
        self.client = self._client()

    # -------------------------------------------------------------------------- MQTT

    def _client(self) -> paho.Client:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=PROVISIONER_IDENTITY, clean_session=False,
                             protocol=paho.MQTTv311)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=self.broker_trust_pem.decode())
        if self.options.tls_name not in (None, self.options.broker_host):
            context.check_hostname = False    # the chain is still verified; the name is checked in _on_connect
        context.load_cert_chain(self.provisioner.cert_path, self.provisioner.key_path)
        client.tls_set_context(context)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.on_log(f"provision broker refused the service's login: {reason_code}")
            return
        name = self.options.tls_name
        if name not in (None, self.options.broker_host) and not certificate_names(client.socket(), name):
            self.on_log(f"provision the broker's certificate does not name {name}: disconnecting")
            client.disconnect()
            return
        _, self._subscription = client.subscribe([(topic_filter, 1) for topic_filter in REQUEST_FILTERS])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """Serving starts once the broker has the subscription (SUBACK): a request sent before would be lost, and
        the open answers are republished only then."""
        if mid != self._subscription:
            return
        with self._lock:
            self.state.republish = True
        self.connected.set()
        self.on_log(f"provision connected to {self.options.broker_host}:{self.options.broker_port} as "
                    f"{PROVISIONER_IDENTITY}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            self.on_log(f"provision lost the broker ({reason_code}); reconnecting")
        self.connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        size = len(message.payload)
        payload = message.payload if size <= REQUEST_MAX_BYTES else b""
        where = parse_request_topic(message.topic)
        device_id = where[1] if where is not None else message.topic
        if not self.queue.put(device_id, Incoming(message.topic, payload, size)):
            self._log_limited((device_id, "dropped"),
                              f"provision id={one_line(device_id)} decision=dropped reason=\"{PER_DEVICE_QUEUE} "
                              f"of its requests wait already\"")

    def _publish(self, device_id: str, channel: str, response: Response | None) -> None:
        payload = render_response(response) if response is not None else b""   # empty: clears the retained answer
        self.client.publish(response_topic(device_id, channel), payload, qos=1, retain=True)

    # -------------------------------------------------------------------------- running

    def run(self, stop: threading.Event) -> None:
        """Serves until `stop` is set. Raises ToolError when the broker does not accept the service at start."""
        self.on_log(f"provision serving {sum(1 for d in self.devices.values() if d.makes_own_key)} device(s) of "
                    f"{self.spec.path.name}; broker files in {self.options.broker_dir}, reload by "
                    f"{self.options.reload.describe()}")
        self.client.connect_async(self.options.broker_host, self.options.broker_port, keepalive=30)
        self.client.loop_start()
        try:
            if not self.connected.wait(CONNECT_TIMEOUT_S) and not stop.is_set():
                raise ToolError(f"mosquitto at {self.options.broker_host}:{self.options.broker_port} did not accept "
                                f"the provisioning service within {CONNECT_TIMEOUT_S:.0f} s",
                                hint="start the broker (gen broker up SPEC), check --broker, and that its config "
                                     "is the one gen generate wrote for this spec")
            next_poll = 0.0
            while not stop.is_set():
                incoming = self.queue.get(timeout=0.1)
                if incoming is not None:
                    self.handle(incoming)
                if time.monotonic() >= next_poll:
                    self.tick()
                    next_poll = time.monotonic() + POLL_INTERVAL_S
        finally:
            self.connected.clear()            # our own disconnect: not a lost broker
            self.client.disconnect()
            self.client.loop_stop()

    def tick(self) -> None:
        """What the service does every second besides requests."""
        for line in self.throttle.summaries(
                lambda key, count: f"provision id={one_line(str(key[0]))} "  # type: ignore[index]
                                   f"decision={key[1]} left out of the log: {count} more "  # type: ignore[index]
                                   f"in the last {LOG_WINDOW_S:g} s"):
            self.on_log(line)
        with self._lock:
            republish, self.state.republish = self.state.republish, False
        if republish and self.connected.is_set():
            self.republish_open_answers()
        stamp = self.store.index_stamp()
        if stamp != self.state.index_stamp:
            self.state.index_stamp = stamp
            self.state.refresh_broker = True      # a revocation, a reopened bootstrap login
            if self.connected.is_set():
                self.announce_rotations()
        if time.monotonic() - self.state.last_crl_check >= CRL_CHECK_INTERVAL_S:
            self.state.last_crl_check = time.monotonic()
            self.state.refresh_broker = True       # crl_pem() re-signs a CRL that is due
        if self.state.refresh_broker:
            self.state.refresh_broker = False
            self.refresh_broker()

    # -------------------------------------------------------------------------- requests

    def handle(self, incoming: Incoming) -> None:
        where = parse_request_topic(incoming.topic)
        if where is None:
            self.on_log(f"provision ignored a message on {one_line(incoming.topic)!r}: not a request topic")
            return
        channel, device_id = where
        if incoming.size > REQUEST_MAX_BYTES:
            self._refuse(device_id, channel, "", f"request too large ({incoming.size} bytes; at most "
                                                 f"{REQUEST_MAX_BYTES})")
            return
        try:
            request = parse_request(incoming.payload, topic_device_id=device_id)
        except ProtocolError as error:
            self._refuse(device_id, channel, "", str(error))
            return
        own = self.device_buckets.bucket(device_id)
        if not own.take():            # over its own share: the other devices' tokens stay theirs
            self._busy(request, channel, max(BUSY_RETRY_S, int(own.seconds_to_next()) + 1),
                       f"more than {PER_DEVICE_RATE:g} request(s) per second from this device")
            return
        if not self.bucket.take():
            self._busy(request, channel, BUSY_RETRY_S, "the service is at its rate limit")
            return
        try:
            if request.type == "csr":
                self.handle_csr(request, channel)
            else:
                self.handle_confirm(request, channel)
        except GenError as error:   # e.g. the CA key's passphrase is not set: the device retries later
            self.on_log(decision_line(device_id, channel, request.request_id, "error", reason=error.message))
            self._publish(device_id, channel, Response("busy", device_id, request.request_id,
                                                       retry_after=policy.REFUSAL_RETRY_S, reason="service error"))

    def facts(self, device_id: str) -> policy.DeviceFacts:
        device = self.devices.get(device_id)
        if device is None:
            return policy.DeviceFacts(in_spec=False, makes_own_key=False, standing=None)
        return policy.DeviceFacts(in_spec=True, makes_own_key=device.makes_own_key,
                                  standing=self.store.standing(device_id) if device.makes_own_key else None,
                                  validity_days=device.pki.validity_days,
                                  renew_before_days=device.pki.renew_before_days)

    def handle_csr(self, request: Request, channel: str) -> None:
        facts = self.facts(request.device_id)
        digest = ""
        history: list = []
        try:
            digest = public_key_sha256(policy.load_csr(request.csr_pem).public_key())  # type: ignore[arg-type]
            history = self.store.certified_key(digest)
        except (ValueError, TypeError):
            pass                          # decide_csr refuses it with the reason
        answered = {entry.key_sha256 for entry in self.store.entries()
                    if entry.id == request.device_id and entry.request == request.request_id and entry.key_sha256}
        decision = policy.decide_csr(request, channel, facts, request.csr_pem, now=self.clock(),
                                     key_history=history, same_request_keys=answered)
        if decision.action == "refuse":
            self._refuse(request.device_id, channel, request.request_id, decision.reason)
            return
        assert facts.standing is not None
        if decision.action == "resend":
            entry = facts.standing.pending
            assert entry is not None
            self._send_cert(request, channel, entry, self.store.chain_pem(entry), "resent")
            return
        last = self.state.last_issue.get(request.device_id)
        if last is not None and time.monotonic() - last < self.options.per_device_interval_s:
            self._busy(request, channel, int(self.options.per_device_interval_s - (time.monotonic() - last)) + 1,
                       "one new certificate per device per "
                       f"{self.options.per_device_interval_s:g} s")
            return
        device = self.devices[request.device_id]
        assert decision.public_key is not None
        entry, chain = self.store.issue_from_public_key(
            request.device_id, decision.public_key, validity_days=device.pki.validity_days,
            request=request.request_id, via=channel,
            renew_at=lambda not_after: policy.renew_at(not_after, device.pki.renew_before_days))
        self.state.last_issue[request.device_id] = time.monotonic()
        if facts.standing.pending is not None:    # its abandoned pending cert was revoked
            self.state.refresh_broker = True
        self._send_cert(request, channel, entry, chain, "issued")

    def _send_cert(self, request: Request, channel: str, entry, chain: bytes, decision: str) -> None:
        trust = self.trust_pem[request.device_id]
        wanted = hashlib.sha256(trust).hexdigest()
        renew = int(entry.renew_at.timestamp()) if entry.renew_at else None
        response = Response("cert", request.device_id, request.request_id, serial=serial_text(entry.serial),
                            renew_at=renew, chain_pem=chain,
                            trust_pem=trust if request.trust and request.trust != wanted else b"")
        self._publish(request.device_id, channel, response)
        self.on_log(decision_line(request.device_id, channel, request.request_id, decision,
                                  serial=serial_text(entry.serial), not_after=f"{entry.not_after:%Y-%m-%d}",
                                  reason=request.reason)
                    + (" trust=renewed" if response.trust_pem else ""))

    def handle_confirm(self, request: Request, channel: str) -> None:
        facts = self.facts(request.device_id)
        decision = policy.decide_confirm(request, facts)
        if decision.action == "refuse":
            self._refuse(request.device_id, channel, request.request_id, decision.reason)
            return
        serial = int(request.serial, 16)
        if decision.action == "abandon":
            self.store.abandon(request.device_id, serial)
            self.state.refresh_broker = True
            self.on_log(decision_line(request.device_id, channel, request.request_id, "abandoned",
                                      serial=request.serial))
            return
        revoked = self.store.confirm(request.device_id, serial) if decision.action == "confirm" else []
        assert facts.standing is not None
        if decision.action == "confirm":
            self.state.refresh_broker = True      # the old certs' serials, and no bootstrap login any more
            self.state.announced_rotations.pop(request.device_id, None)
            if facts.standing.pending is not None and facts.standing.pending.via == "bootstrap":
                self._publish(request.device_id, "bootstrap", None)
        self._publish(request.device_id, "operational",
                      Response("confirmed", request.device_id, request.request_id, serial=request.serial))
        self.on_log(decision_line(request.device_id, channel, request.request_id,
                                  "confirmed" if decision.action == "confirm" else "confirmed-again",
                                  serial=request.serial,
                                  revoked=",".join(serial_text(e.serial) for e in revoked) or "none"))

    def _log_limited(self, key: tuple[str, str], line: str) -> None:
        """A refusal's line, unless that device got too many of that decision lately (then counted, summed up)."""
        if self.throttle.allow(key):
            self.on_log(line)

    def _refuse(self, device_id: str, channel: str, request_id: str, reason: str) -> None:
        self._log_limited((device_id, "refused"), decision_line(device_id, channel, request_id, "refused",
                                                                reason=reason))
        if request_id:                     # a malformed request names no request id the device could match
            self._publish(device_id, channel, Response("refused", device_id, request_id, reason=reason,
                                                       retry_after=policy.REFUSAL_RETRY_S))
        else:
            self._publish(device_id, channel, Response("refused", device_id, "0" * REQUEST_ID_HEX_DIGITS,
                                                       reason=reason, retry_after=policy.REFUSAL_RETRY_S))

    def _busy(self, request: Request, channel: str, retry_after: int, why: str) -> None:
        self._log_limited((request.device_id, "busy"), decision_line(request.device_id, channel, request.request_id,
                                                                     "busy", reason=why, retry_after=str(retry_after)))
        self._publish(request.device_id, channel, Response("busy", request.device_id, request.request_id,
                                                           retry_after=retry_after, reason=why))

    # -------------------------------------------------------------------------- state from the index

    def own_key_devices(self) -> list[str]:
        return [device_id for device_id, device in self.devices.items() if device.makes_own_key]

    def republish_open_answers(self) -> None:
        """After (re)connecting: every answer a device may still wait for, from the index (no broker persistence
        needed): a pending certificate, a rotate command, or the confirmation of its live one."""
        count = 0
        for device_id in self.own_key_devices():
            standing = self.store.standing(device_id)
            entry = standing.pending
            if entry is not None and entry.request and entry.via:
                answer = Response("cert", device_id, entry.request, serial=serial_text(entry.serial),
                                  renew_at=int(entry.renew_at.timestamp()) if entry.renew_at else None,
                                  chain_pem=self.store.chain_pem(entry))
                # On its own channel for a device still waiting for it; on the operational one too, where a
                # device that already switched to it hears that its confirmation never arrived.
                for channel in dict.fromkeys((entry.via, "operational")):
                    self._publish(device_id, channel, answer)
                count += 1
            elif standing.rotation_requested is not None and standing.live is not None:
                self._announce_rotation(device_id, standing.rotation_requested)
                count += 1
            elif standing.live is not None and standing.live.confirmed_at is not None:
                self._publish(device_id, "operational", Response(
                    "confirmed", device_id, standing.live.request or "0" * REQUEST_ID_HEX_DIGITS,
                    serial=serial_text(standing.live.serial)))
                count += 1
        self.on_log(f"provision republished {count} open answer(s)")

    def announce_rotations(self) -> None:
        """`gen pki rotate SPEC --device ID` wrote a request into the index: tell the device (retained)."""
        for device_id in self.own_key_devices():
            standing = self.store.standing(device_id)
            requested = standing.rotation_requested
            if requested is None or standing.live is None or standing.pending is not None:
                continue
            if self.state.announced_rotations.get(device_id) == requested:
                continue
            self._announce_rotation(device_id, requested)

    def _announce_rotation(self, device_id: str, requested: dt.datetime) -> None:
        request_id = secrets.token_hex(REQUEST_ID_HEX_DIGITS // 2)
        self._publish(device_id, "operational", Response("rotate", device_id, request_id))
        self.state.announced_rotations[device_id] = requested
        self.on_log(decision_line(device_id, "operational", request_id, "rotate",
                                  requested=f"{requested:%Y-%m-%dT%H:%M:%SZ}"))

    def refresh_broker(self) -> None:
        """The broker gets the CRL and the bootstrap logins the index implies, and a reload when either changed."""
        crl = self.store.crl_pem()
        waiting = [device_id for device_id in self.own_key_devices() if self.store.standing(device_id).bootstrap_open]
        passwords = tuple(sorted((bootstrap_username(device_id), self.store.bootstrap_secret(device_id))
                                 for device_id in waiting))
        bootstrap = render_password_file(passwords, salt_key=self.salt_key)
        crl_path = self.options.broker_dir / CRL_FILE
        old_crl = crl_path.read_bytes() if crl_path.is_file() else None
        changed = [name for name, content in ((CRL_FILE, crl), (BOOTSTRAP_PASSWORD_FILE, bootstrap))
                   if replace_broker_file(self.options.broker_dir / name, content)]
        if not changed:
            return
        how = self.options.reload.run()
        self.on_log(f"provision broker: wrote {', '.join(changed)} ({len(waiting)} bootstrap login(s) open); "
                    f"reloaded ({how})")
        superseded = [ended.username for ended in usernames_to_end({CRL_FILE: old_crl}, {CRL_FILE: crl},
                                                                    self.store.entries(), keep=(ADMIN_IDENTITY,))]
        if superseded:      # a reload re-checks no TLS session: a revoked certificate would stay connected
            threading.Thread(target=self._end_sessions, args=(superseded,), daemon=True).start()

    def _end_sessions(self, usernames: list[str]) -> None:
        time.sleep(RELOAD_SETTLE_S)
        try:
            end_sessions(usernames, host=self.options.broker_host, port=self.options.broker_port, admin=self.admin,
                         broker_name=self.options.tls_name or self.options.broker_host)
        except GenError as error:
            self.on_log(f"provision could not end the live sessions of {', '.join(usernames)}: {error.message} "
                        f"({error.hint or 'restart the broker'})")
            return
        self.on_log(f"provision ended the live sessions of {', '.join(usernames)} (certificates revoked); "
                    "a device reconnects with its new one")
