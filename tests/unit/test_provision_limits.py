"""The provisioning service's limits as pure decisions and data structures (fast, no broker): per-device fairness
of the queue and the rate limit, the log throttle under a flood, and the cap on certificates issued without a
confirmation. tests/test_provision_sessions.py shows the same against the real broker and service."""

from __future__ import annotations

import datetime as dt

from generator.pki.index import DeviceStanding, IndexEntry, IndexState, device_standing
from generator.provision import policy
from generator.provision.fairness import DeviceBuckets, FairQueue, LogThrottle, TokenBucket
from test_provision_protocol import DIGEST, NOW, decide, entry


def test_a_device_flooding_the_queue_fills_only_its_own_share_and_the_others_take_turns():
    waiting: FairQueue[str] = FairQueue(per_key=4, max_keys=100)
    accepted = [waiting.put("flood", f"flood-{n}") for n in range(1000)]
    assert accepted.count(True) == 4                               # the rest of the flood is dropped at once
    assert waiting.put("dev-b", "dev-b-csr")
    assert [waiting.get(timeout=0) for _ in range(2)] == ["flood-0", "dev-b-csr"]   # dev-b's turn comes next


def test_an_empty_fair_queue_returns_nothing_after_its_timeout():
    assert FairQueue[str](per_key=1, max_keys=1).get(timeout=0.01) is None


def test_a_device_over_its_own_rate_leaves_the_shared_tokens_to_the_others():
    now = [0.0]
    shared = TokenBucket(rate=20.0, burst=40, clock=lambda: now[0])
    own = DeviceBuckets(rate=1.0, burst=4, clock=lambda: now[0])

    def admitted(device_id: str) -> bool:
        return own.bucket(device_id).take() and shared.take()

    assert sum(admitted("flood") for _ in range(1000)) == 4        # its burst, then nothing until its rate refills
    assert all(admitted(f"dev-{n}") for n in range(36))            # everyone else still finds shared tokens
    assert own.bucket("flood").seconds_to_next() == 1.0


def test_a_flood_of_refusals_logs_a_few_lines_and_then_one_count():
    now = [0.0]
    throttle = LogThrottle(lines=5, window_s=60.0, clock=lambda: now[0])
    logged = sum(throttle.allow(("dev-a", "refused")) for _ in range(100_000))
    assert logged == 5
    assert throttle.allow(("dev-b", "refused"))                    # another device's first refusal is logged
    assert throttle.summaries(lambda key, count: f"{key} {count}") == []       # the window is not over yet
    now[0] = 61.0
    assert throttle.summaries(lambda key, count: f"{key[0]} left out {count}") == ["dev-a left out 99995"]
    assert throttle.allow(("dev-a", "refused"))                    # a new window logs again


def test_the_fourth_certificate_without_a_confirmation_is_refused_and_names_gen_provision_allow():
    standing = DeviceStanding("dev-01", None, entry(9, confirmed=False), False, None, False,
                              unconfirmed_issues=policy.MAX_UNCONFIRMED_ISSUES)
    refused = decide(policy.DeviceFacts(True, True, standing, 30, 10))
    assert refused.action == "refuse"
    assert "gen provision allow SPEC --device dev-01" in refused.reason
    fewer = DeviceStanding("dev-01", None, entry(9, confirmed=False), False, None, False,
                           unconfirmed_issues=policy.MAX_UNCONFIRMED_ISSUES - 1)
    assert decide(policy.DeviceFacts(True, True, fewer, 30, 10)).action == "issue"


def test_the_key_of_the_pending_certificate_is_resent_even_at_the_cap():
    standing = DeviceStanding("dev-01", None, entry(9, key=DIGEST, confirmed=False), False, None, False,
                              unconfirmed_issues=policy.MAX_UNCONFIRMED_ISSUES)
    assert decide(policy.DeviceFacts(True, True, standing, 30, 10), history=[entry(9)]).action == "resend"


def csr_entry(serial: int, *, confirmed: bool, status: str) -> IndexEntry:
    return IndexEntry(serial=serial, subject="CN=dev-01", role="device", id="dev-01",
                      not_after=NOW + dt.timedelta(days=30), status=status, key_type="ec-p256", key_sha256=str(serial),
                      request="r", via="bootstrap", confirmed_at=NOW if confirmed else None)


def test_the_index_counts_certificates_issued_since_the_last_confirmation_or_the_operators_allow():
    entries = [csr_entry(1, confirmed=True, status="revoked"), csr_entry(2, confirmed=False, status="revoked"),
               csr_entry(3, confirmed=False, status="revoked"), csr_entry(4, confirmed=False, status="pending")]
    state = IndexState(header={}, entries=entries, stamp=None)
    assert device_standing(state, "dev-01", NOW).unconfirmed_issues == 3
    state.header["reissues_allowed_from"] = {"dev-01": 3}          # gen provision allow, after the third entry
    assert device_standing(state, "dev-01", NOW).unconfirmed_issues == 1
