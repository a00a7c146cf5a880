"""The fast tier stays fast: a test in tests/unit/ that starts a process or opens a socket fails, naming where it
belongs instead (tests/conftest.py)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from conftest import NotAUnitTest


def test_a_unit_test_that_starts_a_process_fails_and_says_where_it_belongs():
    with pytest.raises(NotAUnitTest, match="tests/integration or tests/e2e"):
        subprocess.run(["true"], check=True)


def test_a_unit_test_that_opens_a_connection_fails():
    with socket.socket() as probe, pytest.raises(NotAUnitTest):
        probe.connect(("127.0.0.1", 9))
