"""The host build cache with real builds (g++, slow): a `secrets: embed` build holds the device's private key, so
the cache, its folders and executables are the user's alone, and the build of a device that left the spec is
gone at the next gen simulate."""

from __future__ import annotations

import stat

from conftest import two_device_spec
from generator.output.generate import generate
from generator.simulate.device_runs import default_host_build_cache
from generator.simulate.run import compile_devices
from generator.spec import load_spec


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_host_build_with_an_embedded_key_is_private_and_goes_when_its_device_leaves(tmp_path):
    (tmp_path / "device.yaml").write_text(two_device_spec("mtls"))
    spec = load_spec(tmp_path / "device.yaml")
    out = tmp_path / "build"
    generate(spec, out)
    key = (out / "devices" / "sensor-a" / "client.key").read_bytes()
    executable = compile_devices(spec, out, ["sensor-a"], cache_dir=None)["sensor-a"]
    assert key in executable.read_bytes()                      # why the build must be private
    cache = default_host_build_cache()
    assert executable.is_relative_to(cache)
    assert mode(executable) == 0o700 and mode(executable.parent) == 0o700
    assert mode(cache) == 0o700 and mode(cache.parent) == 0o700

    (tmp_path / "device.yaml").write_text(two_device_spec("mtls").replace("  - id: sensor-a\n", ""))
    spec = load_spec(tmp_path / "device.yaml")
    generate(spec, out)
    compile_devices(spec, out, ["sensor-b"], cache_dir=None)
    assert not executable.exists()
