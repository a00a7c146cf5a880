"""What keeps one device from starving the others at `gen provision serve`, and the log readable under a flood.
Pure data structures with an injectable clock; the service (generator.provision.service) owns one of each.

- `FairQueue`: requests wait per device (a few each), and the worker takes them round-robin, so a device that
  floods its own request topic fills only its own queue: another device's request waits one round at most.
- `TokenBucket`, and `DeviceBuckets` (one bucket per device): the service's rate in the long run and at once, and
  each device's share of it; a device over its share is told to come back later without using the others' tokens.
- `LogThrottle`: a few lines per (device, decision) per window, then one line that says how many were left out.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Deque, Generic, Hashable, TypeVar

Item = TypeVar("Item")
Clock = Callable[[], float]


class FairQueue(Generic[Item]):
    """Bounded per key (a device id); `get` serves the keys in turn."""

    def __init__(self, per_key: int, max_keys: int):
        self.per_key, self.max_keys = per_key, max_keys
        self._items: dict[Hashable, Deque[Item]] = {}
        self._turns: Deque[Hashable] = deque()        # keys with something waiting, each once, in serving order
        self._ready = threading.Condition()

    def put(self, key: Hashable, item: Item) -> bool:
        """False (the item is dropped) when that key already has `per_key` items waiting, or too many keys wait."""
        with self._ready:
            waiting = self._items.get(key)
            if waiting is None:
                if len(self._items) >= self.max_keys:
                    return False
                waiting = self._items[key] = deque()
                self._turns.append(key)
            if len(waiting) >= self.per_key:
                return False
            waiting.append(item)
            self._ready.notify()
            return True

    def get(self, timeout: float) -> Item | None:
        """The next item, the keys taking turns; None when nothing came within `timeout` s."""
        with self._ready:
            if not self._turns and not self._ready.wait_for(lambda: bool(self._turns), timeout):
                return None
            key = self._turns.popleft()
            waiting = self._items[key]
            item = waiting.popleft()
            if waiting:
                self._turns.append(key)
            else:
                del self._items[key]
            return item

    def __len__(self) -> int:
        with self._ready:
            return sum(len(waiting) for waiting in self._items.values())


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.updated = clock()

    def refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> bool:
        self.refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def seconds_to_next(self) -> float:
        self.refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class DeviceBuckets:
    """One TokenBucket per device, made on first use."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, device_id: str) -> TokenBucket:
        if device_id not in self._buckets:
            self._buckets[device_id] = TokenBucket(self.rate, self.burst, self.clock)
        return self._buckets[device_id]


class LogThrottle:
    """At most `lines` log lines per key per `window_s`; the rest are counted and summed up in one line."""

    def __init__(self, lines: int, window_s: float, clock: Clock = time.monotonic):
        self.lines, self.window_s, self.clock = lines, window_s, clock
        self._windows: dict[Hashable, tuple[float, int, int]] = {}   # key -> (window start, logged, left out)

    def allow(self, key: Hashable) -> bool:
        now = self.clock()
        start, logged, left_out = self._windows.get(key, (now, 0, 0))
        if now - start >= self.window_s:
            start, logged, left_out = now, 0, left_out     # the summary of the old window is still due
        if logged < self.lines:
            self._windows[key] = (start, logged + 1, left_out)
            return True
        self._windows[key] = (start, logged, left_out + 1)
        return False

    def summaries(self, describe: Callable[[Hashable, int], str]) -> list[str]:
        """One line per key whose left-out count is due (its window is over); the counts start again."""
        now = self.clock()
        lines = []
        for key, (start, logged, left_out) in list(self._windows.items()):
            if now - start < self.window_s:
                continue
            if left_out:
                lines.append(describe(key, left_out))
            del self._windows[key]
        return lines
