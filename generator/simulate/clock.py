"""A simulated world some days ahead (`gen simulate --days-ahead N`): the broker and the devices run under
libfaketime (Debian's `faketime` package), the provisioning service with the same offset on its injected clock, so
all of them agree on the date: certificates near their end renew, as they would in the field.

libfaketime shifts the wall clock only (FAKETIME_DONT_FAKE_MONOTONIC): timeouts and backoffs keep real time. The
Python side is not preloaded: libfaketime 0.9.10 makes CPython's sleeps (clock_nanosleep on CLOCK_MONOTONIC with
TIMER_ABSTIME) fail with EINVAL when it leaves the monotonic clock alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

from generator.core.errors import ToolError
from generator.pki.issuing import utcnow

LIBFAKETIME_DIRS = ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime")
LIBFAKETIME = "libfaketimeMT.so.1"   # the thread-safe build: the broker and the host runtime use threads


def find_libfaketime() -> Path:
    for directory in LIBFAKETIME_DIRS:
        candidate = Path(directory) / LIBFAKETIME
        if candidate.is_file():
            return candidate
    raise ToolError("libfaketime is not installed: --days-ahead runs the broker and the devices with a shifted clock",
                    hint="install it: sudo apt-get install faketime (./scripts/setup does)")


def shifted_environment(offset: dt.timedelta) -> dict[str, str]:
    """The environment that runs a program `offset` ahead of real time (wall clock only)."""
    return {"LD_PRELOAD": str(find_libfaketime()), "FAKETIME": f"{int(offset.total_seconds()):+d}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def shifted_clock(offset: dt.timedelta) -> Callable[[], dt.datetime]:
    """The clock of the Python side (the provisioning service, its PKI store) `offset` ahead."""
    return lambda: utcnow() + offset
