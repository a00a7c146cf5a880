"""The provisioning protocol and the service's decisions, without a network: what a request must look like to be
read at all, and which requests get a certificate. The same rules run in tests/integration/test_provision_refusals.py against
the real broker and service; here each edge case is one fast test."""

from __future__ import annotations

import base64
import datetime as dt
import random
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from generator.pki.index import DeviceStanding, IndexEntry
from generator.pki.x509_facts import public_key_sha256
from generator.provision import policy
from generator.provision.policy import DeviceFacts, decide_confirm, decide_csr, load_csr, normalised_csr_pem
from generator.spec.provisioning_protocol import (
    REASON_MAX_BYTES,
    REQUEST_MAX_BYTES,
    RESPONSE_MAX_BYTES,
    ProtocolError,
    Request,
    Response,
    one_line,
    parse_request,
    parse_request_topic,
    parse_response,
    render_request,
    render_response,
    request_topic,
    reserved_topic_problem,
)
from generator.provision.fairness import TokenBucket

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
RID = "0123456789abcdef0123456789abcdef"


def csr_pem(key, common_name: str = "dev-01", *, extra: tuple = ()) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), *extra])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


KEY = ec.generate_private_key(ec.SECP256R1())
CSR = csr_pem(KEY)
DIGEST = public_key_sha256(KEY.public_key())


def request(payload_csr: bytes = CSR, **fields) -> Request:
    return Request("csr", fields.pop("device_id", "dev-01"), fields.pop("request_id", RID), csr_pem=payload_csr,
                   **fields)


def parse(payload: bytes, topic_id: str = "dev-01") -> Request:
    return parse_request(payload, topic_device_id=topic_id)


# ---------------------------------------------------------------------------------------------- wire format


def test_a_request_reads_back_as_it_was_written():
    sent = request(reason="expiry", trust="ab" * 32)
    assert parse(render_request(sent)) == sent
    confirm = Request("confirm", "dev-01", RID, serial="4A3F", trust="cd" * 32)
    assert parse(render_request(confirm)) == confirm


@pytest.mark.parametrize("payload, reason", [
    (b"x" * (REQUEST_MAX_BYTES + 1), rf"request too large \({REQUEST_MAX_BYTES + 1} bytes; at most {REQUEST_MAX_BYTES}\)"),
    (b"gen-provision 1\ntype csr\n", r"no empty line after the header"),
    ("gen-provision 1\ntype csr\nid dév\n\n".encode(), r"the header is not ASCII"),
    (b"gen-provision 2\ntype csr\n\n", r"the first line is not 'gen-provision 1'"),
    (b"gen-provision 1\ntype csr\ntype csr\n\n", r"empty, repeated or unprintable"),
    (b"gen-provision 1\ntype csr\nid dev\x07\n\n", r"empty, repeated or unprintable"),
    (b"gen-provision 1\ntype csr\nid dev-01\nrequest " + RID.encode() + b"\nowner root\n\n", r"unknown header keys"),
    (b"gen-provision 1\ntype delete\nid dev-01\n\n", r"type 'delete'"),
    (b"gen-provision 1\ntype csr\nid dev-02\nrequest " + RID.encode() + b"\n\n",
     r"request names id 'dev-02' on the topic of 'dev-01'"),
    (b"gen-provision 1\ntype csr\nid dev-01\nrequest " + RID.upper().encode() + b"\n\n", r"request id is not 32"),
    (b"gen-provision 1\ntype csr\nid dev-01\nrequest 1234\n\n", r"request id is not 32"),
    (b"gen-provision 1\ntype csr\nid dev-01\nrequest " + RID.encode() + b"\ntrust xyz\n\n", r"trust is not a SHA-256"),
    (b"gen-provision 1\ntype csr\nid dev-01\nrequest " + RID.encode() + b"\nreason because\n\nPEM", r"reason 'because'"),
    (b"gen-provision 1\ntype csr\nid dev-01\nrequest " + RID.encode() + b"\nreason retry\n\n \n", r"a csr without a CSR"),
    (b"gen-provision 1\ntype confirm\nid dev-01\nrequest " + RID.encode() + b"\nserial 4a3f\n\n", r"upper-case hex"),
    (b"gen-provision 1\ntype failed\nid dev-01\nrequest " + RID.encode() + b"\n\n", r"failed without a serial"),
])
def test_a_malformed_request_is_refused_with_its_reason(payload, reason):
    with pytest.raises(ProtocolError, match=reason):
        parse(payload)


def test_request_topics_name_their_channel_and_device_and_nothing_else_is_one():
    assert parse_request_topic(request_topic("dev-01", "bootstrap")) == ("bootstrap", "dev-01")
    assert parse_request_topic(request_topic("dev-01", "operational")) == ("operational", "dev-01")
    for topic in ("gen/prov/dev-01/resp", "gen/other/dev-01/req", "gen/prov/+/req", "gen/prov/#/req",
                  "gen/prov/dev-01/req/x", "x/prov/dev-01/req", "gen/prov//req"):
        assert parse_request_topic(topic) is None, topic


def test_a_device_that_makes_its_key_may_not_use_the_provisioning_topics_for_its_app():
    assert reserved_topic_problem("gen/telemetry", "dev-01", is_filter=False)
    assert reserved_topic_problem("#", "dev-01", is_filter=True)
    assert "where the device receives its certificates" in reserved_topic_problem("+/prov/dev-01/+", "dev-01",
                                                                                is_filter=True)
    assert reserved_topic_problem("devices/dev-01/cmd/#", "dev-01", is_filter=True) is None
    assert reserved_topic_problem("general/x", "dev-01", is_filter=False) is None


def test_a_response_reads_back_with_its_chain_and_trust_bundle_apart():
    sent = Response("cert", "dev-01", RID, serial="4A3F", renew_at=1898121600, chain_pem=b"LEAF\nCA\n",
                    trust_pem=b"ROOT1\nROOT2\n")
    back = parse_response(render_response(sent))
    assert (back.type, back.serial, back.renew_at) == ("cert", "4A3F", 1898121600)
    assert (back.chain_pem, back.trust_pem) == (b"LEAF\nCA\n", b"ROOT1\nROOT2\n")
    assert parse_response(render_response(Response("cert", "dev-01", RID, chain_pem=b"LEAF"))).trust_pem == b""


def test_a_response_larger_than_a_device_receives_is_never_sent():
    with pytest.raises(ValueError, match=rf"over the {RESPONSE_MAX_BYTES}"):
        render_response(Response("cert", "dev-01", RID, chain_pem=b"x" * RESPONSE_MAX_BYTES))


def test_a_refusal_reason_is_one_printable_line_of_bounded_length():
    assert one_line("bad\nthing\x00\x1b[31m") == "bad?thing??[31m"
    assert len(one_line("x" * 1000)) == REASON_MAX_BYTES
    rendered = render_response(Response("refused", "dev-01", RID, reason="two\nlines"))
    assert b"reason two?lines\n" in rendered


# ---------------------------------------------------------------------------------------------- the CSR


def with_ecdsa_null(pem: bytes) -> bytes:
    """The CSR as mbedTLS before 2.28.5 writes it: ecdsa-with-SHA256 followed by a NULL parameter."""
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    old = bytes.fromhex("300a06082a8648ce3d040302")
    _, start, _ = policy._der_item(der, 0)
    _, _, info_end = policy._der_item(der, start)
    assert der[info_end:info_end + len(old)] == old       # the outer signatureAlgorithm, after the signed part
    body = der[start:info_end] + bytes.fromhex("300c06082a8648ce3d0403020500") + der[info_end + len(old):]
    fixed = b"\x30" + policy._der_length(len(body)) + body
    encoded = base64.encodebytes(fixed).decode().replace("\n", "")
    return ("-----BEGIN CERTIFICATE REQUEST-----\n" + encoded + "\n-----END CERTIFICATE REQUEST-----\n").encode()


def test_a_csr_with_mbedtls_2_28_3s_null_parameter_is_read_with_its_signature_intact():
    old_style = with_ecdsa_null(CSR)
    with pytest.raises(ValueError):
        x509.load_pem_x509_csr(old_style)            # cryptography >= 50 refuses it as it is
    csr = load_csr(old_style)
    assert csr.is_signature_valid and public_key_sha256(csr.public_key()) == DIGEST


def test_a_csr_without_the_null_parameter_and_text_that_is_no_csr_are_left_alone():
    assert normalised_csr_pem(CSR) == CSR
    assert normalised_csr_pem(b"hello") == b"hello"
    broken = b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n"
    assert normalised_csr_pem(broken) == broken


@pytest.mark.parametrize("key, common_name, extra, reason", [
    (rsa.generate_private_key(public_exponent=65537, key_size=1024), "dev-01", (), r"^not an EC P-256 key \(RSA 1024\)$"),
    (ec.generate_private_key(ec.SECP384R1()), "dev-01", (), r"^not an EC P-256 key \(secp384r1\)$"),
    (ed25519.Ed25519PrivateKey.generate(), "dev-01", (), r"^not an EC P-256 key"),
    (KEY, "dev-02", (), r"^CSR is for 'dev-02', not 'dev-01'$"),
    (KEY, "dev-01", (x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),), r"subject must be CN=dev-01 alone"),
])
def test_a_csr_that_cannot_be_signed_for_the_device_says_why(key, common_name, extra, reason):
    problem = policy.csr_problem(x509.load_pem_x509_csr(csr_pem(key, common_name, extra=extra)), "dev-01")
    assert problem and re.search(reason, problem), problem


def test_a_csr_signed_with_another_hash_than_sha256_is_refused():
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-01")])).sign(KEY, hashes.SHA384())
    assert policy.csr_problem(csr, "dev-01") == "the CSR is signed with sha384, not SHA-256"


# ---------------------------------------------------------------------------------------------- decisions


def entry(serial: int, *, key: str = "other", confirmed: bool = True, request: str = RID, days: int = 30,
          status: str = "valid") -> IndexEntry:
    return IndexEntry(serial=serial, subject="CN=dev-01", role="device", id="dev-01",
                      not_after=NOW + dt.timedelta(days=days), status=status, key_type="ec-p256",
                      key_sha256=key, request=request, via="bootstrap",
                      confirmed_at=NOW - dt.timedelta(days=1) if confirmed else None)


def facts(*, live=None, pending=None, ever=False, rotation=None, reopened=False, in_spec=True, own=True,
          renew_before_days=10) -> DeviceFacts:
    standing = DeviceStanding("dev-01", live, pending, ever, rotation, reopened) if in_spec and own else None
    return DeviceFacts(in_spec=in_spec, makes_own_key=own, standing=standing, validity_days=30,
                       renew_before_days=renew_before_days)


def decide(device_facts: DeviceFacts, *, channel: str = "bootstrap", csr: bytes = CSR, history=(),
           answered: set[str] | None = None) -> policy.Decision:
    return decide_csr(request(csr), channel, device_facts, csr, now=NOW, key_history=list(history),
                      same_request_keys=answered or set())


def test_a_first_boot_csr_gets_a_certificate():
    decision = decide(facts())
    assert decision.action == "issue" and decision.key_sha256 == DIGEST


def test_an_id_not_in_the_spec_or_with_a_host_made_key_is_refused():
    assert decide(facts(in_spec=False)).reason == "unknown device id 'dev-01' (not in the spec)"
    assert "key_origin: host" in decide(facts(own=False)).reason


def test_a_malformed_csr_is_refused():
    assert decide(facts(), csr=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                  ).reason == "malformed CSR"


def test_the_key_of_the_pending_certificate_gets_that_certificate_again():
    assert decide(facts(pending=entry(7, key=DIGEST, confirmed=False)), history=[entry(7)]).action == "resend"


def test_a_key_certified_before_is_refused_as_a_replay():
    assert decide(facts(live=entry(7), ever=True, rotation=NOW), channel="operational",
                  history=[entry(7, key=DIGEST)]).reason.startswith("key already used")


def test_a_request_id_answered_for_another_key_is_refused():
    assert decide(facts(), answered={"another"}).reason == "this request id was answered for another key"


def test_the_bootstrap_channel_is_refused_once_the_device_has_an_identity():
    assert decide(facts(live=entry(7), ever=True)).reason.startswith("already provisioned")
    assert decide(facts(ever=True)).reason.startswith("already provisioned")          # revoked, not reopened
    assert decide(facts(ever=True, reopened=True)).action == "issue"                 # gen provision allow


def test_a_rotation_is_refused_before_the_renewal_window_unless_the_operator_asked():
    live = entry(7, days=30)                       # renew 10 days before expiry: the window opens in 20 days
    refused = decide(facts(live=live, ever=True), channel="operational")
    assert refused.reason == f"renewal not due before {live.not_after - dt.timedelta(days=10):%Y-%m-%dT%H:%MZ}"
    assert decide(facts(live=live, ever=True, rotation=NOW), channel="operational").action == "issue"
    assert decide(facts(live=entry(7, days=5), ever=True), channel="operational").action == "issue"
    assert decide(facts(), channel="operational").reason.startswith("no live identity to rotate from")


def confirm(kind: str, serial: str) -> Request:
    return Request(kind, "dev-01", RID, serial=serial)


def test_a_confirmation_names_the_pending_certificate_or_the_live_one():
    pending, live = entry(8, confirmed=False), entry(7)
    assert decide_confirm(confirm("confirm", "8"), facts(live=live, pending=pending)).action == "confirm"
    assert decide_confirm(confirm("confirm", "7"), facts(live=live)).action == "confirmed"
    assert decide_confirm(confirm("confirm", "9"), facts(live=live)).reason == "no pending certificate 9"
    assert decide_confirm(confirm("failed", "8"), facts(live=live, pending=pending)).action == "abandon"
    assert decide_confirm(confirm("failed", "7"), facts(live=live)).action == "refuse"
    assert decide_confirm(confirm("confirm", "8"), facts(in_spec=False)).action == "refuse"


def test_renewal_is_due_before_the_window_by_at_most_a_tenth_of_it_or_a_day():
    not_after = NOW + dt.timedelta(days=100)
    times = [policy.renew_at(not_after, 30, rng=random.Random(seed)) for seed in range(200)]
    assert all(not_after - dt.timedelta(days=31) <= t <= not_after - dt.timedelta(days=30) for t in times)
    assert len(set(times)) > 100                                                     # spread, not one instant
    short = [policy.renew_at(not_after, 2, rng=random.Random(seed)) for seed in range(50)]
    assert all(t >= not_after - dt.timedelta(days=2, hours=4, minutes=48) for t in short)   # a tenth of 2 days


def test_the_rate_limit_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] = 100.0
    assert sum(bucket.take() for _ in range(10)) == 3                                # never more than the burst
