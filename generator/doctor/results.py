"""What each step of `gen doctor` found: a StepResult (ok, failed with its one fix, or skipped), in the order of
STEPS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STEPS: tuple[tuple[str, str], ...] = (
    ("pki", "spec and PKI are consistent"),
    ("resolve", "broker name resolves"),
    ("tcp", "TCP connects"),
    ("tls", "TLS handshake (mbedTLS 2.28 as on the ESP32, and OpenSSL)"),
    ("client-cert", "broker accepts the client certificate"),
    ("mqtt-connect", "MQTT CONNECT is accepted"),
    ("acl", "ACL lets the device publish and receive"),
)


STEP_TITLES = dict(STEPS)


@dataclass(frozen=True)
class StepResult:
    step: str                        # one of STEPS' keys
    ok: bool | None                  # None: skipped, because an earlier step failed
    summary: str                     # one line: what was found
    fix: str | None = None           # one line: what to do (failures only)
    details: tuple[str, ...] = ()    # supporting facts: issuers, SANs, addresses, raw errors

    @property
    def title(self) -> str:
        return STEP_TITLES[self.step]

    @property
    def status(self) -> str:
        return "skipped" if self.ok is None else "ok" if self.ok else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "title": self.title, "status": self.status, "ok": self.ok,
                "summary": self.summary, "fix": self.fix, "details": list(self.details)}


def passed(step: str, summary: str, *details: str) -> StepResult:
    return StepResult(step, True, summary, None, tuple(details))


def failed(step: str, summary: str, fix: str, *details: str) -> StepResult:
    return StepResult(step, False, summary, fix, tuple(details))


def skipped(step: str) -> StepResult:
    return StepResult(step, None, "skipped: an earlier step failed")
