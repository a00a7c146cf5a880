"""A generated firmware project's own pytest-embedded test (test/test_device.py) passes, unchanged, against the host
build through our `dut` fixture (generator.simulate.pytest_host_dut): boot, connect over TLS, and a command round trip
published with the spec's backend identity."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simulate_support import simulated_project


@pytest.mark.parametrize("example", ["arduino-mtls", "espidf-password"])
def test_the_generated_device_test_passes_against_the_host_build(example, tmp_path_factory):
    project = simulated_project(example, tmp_path_factory)
    device_id = project.device().id
    firmware = project.out_dir / "devices" / device_id / "firmware"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "generator.simulate.pytest_host_dut", "-p", "no:cacheprovider",
         "--host-binary", str(project.binary(device_id)), "-v", "-rs", str(firmware / "test")],
        cwd=firmware, capture_output=True, text=True, timeout=300,
        env={name: value for name, value in os.environ.items() if not name.startswith("GEN_")},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-4000:]
