"""The generated broker logs times a reader can read, not seconds since 1970 (issue 26, item 10); real mosquitto."""

from __future__ import annotations

import re


def test_the_generated_brokers_log_lines_start_with_a_date_and_time(broker_project, start_broker):
    broker = start_broker(broker_project("mtls").broker_dir)
    lines = [line for line in broker.log_text().splitlines() if line.strip()]
    assert lines
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: ", line) for line in lines), lines[:3]
