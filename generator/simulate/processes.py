"""The simulated devices as processes: one per device, dying with gen, its stdout streamed line by line as `<id> |
line`, restarted when the firmware reboots, stopped with SIGTERM (then SIGKILL after a grace period) so that it
prints its summary."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from generator.firmware.log import LinkTally, tally_line
from generator.simulate.bootloader import BootError, boot
from generator.simulate.device_runs import DeviceRun, DeviceSummary, EventSink, device_summary

STOPPED_PREFIX = "[sim] stopped"   # the runtime's last line when it ends on a signal


REBOOT_EXIT_CODE = 3               # the runtime's exit when the firmware restarts the device


STOP_GRACE_S = 5.0          # after SIGTERM, how long a device has to print its summary before SIGKILL


LineSink = Callable[[str, str], None]        # (device id, one line of its serial output)


def _load_prctl():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_PRCTL = _load_prctl()   # looked up here, not in the forked child


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when `gen` itself dies, so no simulated device outlives the command."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DeviceProcess:
    """One running simulated device. Its stdout is read by the caller (`fd`, `read_lines`); its own session,
    so a terminal's Ctrl-C reaches `gen`, which then stops the devices in order."""

    def __init__(self, run: DeviceRun):
        self.run = run
        self._pending = b""
        self._said: list[str] = []      # the simulated bootloader's lines, before the next ones read
        self.eof = False
        self.tally = LinkTally()
        self.stopped = False
        self.stopping = False
        self._start()

    def _start(self) -> None:
        """Starts the device's process; with a flash, the image the bootloader chooses from it."""
        binary, env = self.run.binary, dict(self.run.env)
        if self.run.flash is not None:
            try:
                chosen = boot(self.run.flash)
            except BootError as error:
                if not hasattr(self, "process"):
                    raise                     # the flash written at the start holds no bootable image
                self._said.append(f"[sim] boot: {error}; the device stays in its bootloader")
                self.eof = True
                return
            binary = chosen.executable
            env.update(self.run.flash.environment(chosen.slot))
            self._said.append(f"[sim] boot: {chosen.slot}, {chosen.words}")
        self.process = subprocess.Popen(
            [str(binary)], env={**os.environ, **env},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        assert self.process.stdout is not None   # stdout=PIPE
        self.fd = self.process.stdout.fileno()
        os.set_blocking(self.fd, False)

    @property
    def device_id(self) -> str:
        return self.run.device_id

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_lines(self) -> list[str]:
        """Complete lines available now (without newline); each is tallied as it passes."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        data = self._pending + b"".join(chunks)
        *complete, self._pending = data.split(b"\n")
        if self.eof and self._pending:
            complete.append(self._pending)
            self._pending = b""
        lines = self._said + [raw.decode("utf-8", errors="replace").rstrip("\r") for raw in complete]
        self._said = []
        if self.eof and self._rebooted():
            lines += self._said
            self._said = []
        for line in lines:
            self.tally = tally_line(self.tally, line)
            self.stopped = self.stopped or line.startswith(STOPPED_PREFIX)
        return lines

    def _rebooted(self) -> bool:
        """After the process ended: a device with a flash that rebooted (exit 3) boots again. True if it did."""
        if self.run.flash is None or self.stopping or self.process.wait() != REBOOT_EXIT_CODE:
            return False
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.eof = False
        self._start()
        return not self.eof

    def signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            self.stopping = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def summary(self) -> DeviceSummary:
        exit_code = self.process.poll()
        return device_summary(self.device_id, self.tally, exit_code=exit_code,
                              stopped=self.stopped or exit_code == REBOOT_EXIT_CODE)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass(frozen=True)
class ScheduledAction:
    """Something to do once during a run, `after` seconds into it (e.g. restart the broker)."""

    after: float
    describe: str
    action: Callable[[], None] = field(compare=False)
    at: float = 0.0             # the monotonic time it falls due, set when the run starts


def _pump(processes: Sequence[DeviceProcess], on_line: LineSink, *, deadline: float | None,
          actions: Sequence[ScheduledAction] = (), on_event: EventSink = lambda _: None) -> None:
    """Reads every device's output until each has exited or the deadline (monotonic) passes, running each
    action when it falls due."""
    pending = sorted(actions, key=lambda action: action.at)
    reading = {process.fd: process for process in processes if not process.eof}
    with selectors.DefaultSelector() as selector:
        for process in reading.values():
            selector.register(process.fd, selectors.EVENT_READ, process)
        while reading:
            now = time.monotonic()
            while pending and now >= pending[0].at:
                due = pending.pop(0)
                on_event(due.describe)
                due.action()
            if deadline is not None and now >= deadline:
                return
            wake = min([at for at in (deadline, pending[0].at if pending else None) if at is not None],
                       default=now + 0.5)
            for key, _ in selector.select(timeout=min(max(0.0, wake - now), 0.5)):
                ready: DeviceProcess = key.data
                for line in ready.read_lines():
                    on_line(ready.device_id, line)
                if ready.eof or ready.fd != key.fd:    # ended, or rebooted into a new process
                    selector.unregister(key.fd)
                    del reading[key.fd]
                if not ready.eof and ready.fd not in reading:
                    selector.register(ready.fd, selectors.EVENT_READ, ready)
                    reading[ready.fd] = ready


@contextlib.contextmanager
def started_devices(runs: Sequence[DeviceRun]) -> Iterator[list[DeviceProcess]]:
    """Starts every device; whatever happens in the block, none is left running after it."""
    processes: list[DeviceProcess] = []
    try:
        for run in runs:
            processes.append(DeviceProcess(run))
        yield processes
    finally:
        for process in processes:
            process.close()


def stop_devices(processes: Sequence[DeviceProcess], on_line: LineSink,
                 on_event: EventSink = lambda _: None) -> tuple[DeviceSummary, ...]:
    """SIGTERM to every device, then reads until each has printed its stop line and exited (SIGKILL after
    STOP_GRACE_S). Returns the summaries in the order of `processes`."""
    for process in processes:
        process.signal(signal.SIGTERM)
    _pump(processes, on_line, deadline=time.monotonic() + STOP_GRACE_S)
    for process in processes:
        if not process.eof:
            on_event(f"{process.device_id} did not stop within {STOP_GRACE_S:g} s of SIGTERM; killing it")
            process.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.process.wait(timeout=STOP_GRACE_S)
        for line in process.read_lines():
            on_line(process.device_id, line)
    return tuple(process.summary() for process in processes)


def run_devices(runs: Sequence[DeviceRun], *, duration: float | None, on_line: LineSink,
                actions: Sequence[ScheduledAction] = (), on_event: EventSink = lambda _: None
                ) -> tuple[DeviceSummary, ...]:
    """Runs the devices for `duration` seconds (None: until Ctrl-C), streaming their output, then stops them and
    returns their summaries. Ctrl-C ends the run early: the devices are stopped and their summaries collected,
    then RunInterrupted (a KeyboardInterrupt) carries them to the caller."""
    with started_devices(runs) as processes:
        try:
            stream_devices(processes, duration=duration, on_line=on_line, actions=actions, on_event=on_event)
        except KeyboardInterrupt:
            on_event("interrupted: stopping the devices")
            raise RunInterrupted(stop_devices(processes, on_line, on_event)) from None
        return stop_devices(processes, on_line, on_event)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the run; the devices are stopped and these are their summaries."""

    def __init__(self, summaries: tuple[DeviceSummary, ...]):
        super().__init__("interrupted")
        self.summaries = summaries


def stream_devices(processes: Sequence[DeviceProcess], *, duration: float | None, on_line: LineSink,
                   actions: Sequence[ScheduledAction] = (), on_event: EventSink = lambda _: None) -> None:
    """Streams the running devices' output for `duration` seconds (None: until every one has exited), running
    each scheduled action when it is due."""
    started = time.monotonic()
    _pump(processes, on_line, deadline=started + duration if duration is not None else None,
          actions=[dataclasses.replace(action, at=started + action.after) for action in actions], on_event=on_event)
