"""The generated firmware's serial log, read back: what a device did on its MQTT link, from the lines it prints.

Both flavours say the same things in the same words (gen_link/*/gen_link.*); ESP-IDF puts its log prefix,
`I (1234) link: `, in front. These lines are the contract between the firmware and `gen simulate`'s summary, so
the summary is what the device observably did, whichever MQTT library it links:

    [mqtt] connected to HOST:PORT as ID            a session is up
    [mqtt] published N bytes to TOPIC              a PUBLISH handed to the library (the birth message too)
    [mqtt] received N bytes on TOPIC               a message delivered to the application's handler
    [mqtt] connect failed: WHY                     an attempt that did not end in a session
    [mqtt] connection error: WHY                   the transport failed under a session (ESP-IDF)
    [mqtt] connection lost[: WHY]                  the session ended
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable

_CONNECTED = re.compile(r"\[mqtt\] connected to (?P<broker>\S+):\d+ as ")
_PUBLISHED = re.compile(r"\[mqtt\] published \d+ bytes to ")
_RECEIVED = re.compile(r"\[mqtt\] received \d+ bytes on ")
_FAILURE = re.compile(r"\[mqtt\] (?P<text>(?:connect failed|connection error): .*)")
_LOST = re.compile(r"\[mqtt\] (?P<text>connection lost(?:: .*)?)$")


@dataclass(frozen=True)
class LinkTally:
    """The MQTT link as the device's log tells it."""

    connected: bool = False      # a session is up (after the last line read)
    connects: int = 0
    messages_out: int = 0
    messages_in: int = 0
    last_error: str = ""         # the latest failure, in the firmware's words
    failed_since_connect: bool = False
    broker: str = ""             # the broker name of the latest connect (a cluster: the node it is on)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


def tally_line(tally: LinkTally, line: str) -> LinkTally:
    """The tally after one more line of the device's serial output."""
    line = line.rstrip("\r\n")
    connected = _CONNECTED.search(line)
    if connected:
        return replace(tally, connected=True, connects=tally.connects + 1, failed_since_connect=False,
                       broker=connected["broker"])
    if _PUBLISHED.search(line):
        return replace(tally, messages_out=tally.messages_out + 1)
    if _RECEIVED.search(line):
        return replace(tally, messages_in=tally.messages_in + 1)
    failure = _FAILURE.search(line)
    if failure:
        return replace(tally, last_error=failure["text"], failed_since_connect=True)
    lost = _LOST.search(line)
    if lost:
        # A bare "connection lost" follows the error that caused it (ESP-IDF): keep that one.
        keep = tally.failed_since_connect and lost["text"] == "connection lost"
        return replace(tally, connected=False, last_error=tally.last_error if keep else lost["text"])
    return tally


def tally_lines(lines: Iterable[str]) -> LinkTally:
    tally = LinkTally()
    for line in lines:
        tally = tally_line(tally, line)
    return tally
