"""Progress of a long step (a host build, `gen build`): on a terminal, one status line that follows what is being
done ("compiling app.cpp, 3 of 12"); in a pipe or a CI log, a line at least every HEARTBEAT_S seconds, so a long
step never looks hung and never floods the log."""

from __future__ import annotations

import threading
import time
from typing import Callable

from rich.console import Console
from rich.status import Status

from generator.cli.terminal import err_console

HEARTBEAT_S = 10.0


class ProgressLines:
    """`step(text)` says what is being done now. Use as a context manager around the long step."""

    def __init__(self, what: str, *, console: Console = err_console, interval: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.console = console
        self.interval = interval
        self.clock = clock
        self.latest = ""
        self._begun = clock()
        self._said_at = self._begun
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: Status | None = None

    def __enter__(self) -> "ProgressLines":
        if self.console.is_terminal:
            self._status = self.console.status(self.what)
            self._status.start()
        else:
            self._thread = threading.Thread(target=self._beat, name="gen-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval)
        if self._status is not None:
            self._status.stop()

    def step(self, text: str) -> None:
        with self._lock:
            self.latest = text
            if self._status is not None:
                self._status.update(f"{self.what}: {text}")
            elif self.clock() - self._said_at >= self.interval:
                self._say()

    def _say(self) -> None:
        elapsed = self.clock() - self._begun
        doing = f": {self.latest}" if self.latest else ""
        self.console.print(f"gen: {self.what}{doing} ({elapsed:.0f} s)")
        self._said_at = self.clock()

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            with self._lock:
                if self.clock() - self._said_at >= self.interval:
                    self._say()
