"""The facts of a device's log over MQTT (gen_link's log_publish.c), from the spec's `log:`."""

from __future__ import annotations

from dataclasses import dataclass

from generator.core.c_literals import c_string_literal
from generator.spec.contract import LOG_LEVELS
from generator.spec.device_limits import LOG_LINE_CAPACITY, MAX_CLIENT_ID
from generator.spec.model import Device


@dataclass(frozen=True)
class LogFacts:
    """The device's log over MQTT (log_publish.c): level as ESP-IDF numbers it, the topic template as a C literal."""
    level: int
    level_name: str
    topic_template: str
    topic_capacity: int
    rate: int
    burst: int
    line_capacity: int


def log_facts(device: Device) -> LogFacts | None:
    if device.log is None:
        return None
    placeholders = device.log.topic_template.count("{id}")
    return LogFacts(
        level=LOG_LEVELS.index(device.log.level), level_name=device.log.level,
        topic_template=c_string_literal(device.log.topic_template),
        topic_capacity=len(device.log.topic_template.encode()) + placeholders * (MAX_CLIENT_ID - len("{id}")) + 1,
        rate=device.log.rate, burst=device.log.burst, line_capacity=LOG_LINE_CAPACITY)
