"""`gen ota publish` against the real Mosquitto: who may announce (gen's OTA identity only, not the backend), what it
refuses (a version older than the spec's, unless --allow-downgrade, which alone writes "downgrade": a permission
signed with the project's OTA key for that device and image, while it runs the spec's version, for
--downgrade-valid-for days; an image below the spec's security.secure_version, downgrade or not), and what
it leaves in OUT/ota (nothing when it cannot announce; the current and previous image of each device, no more)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization

from conftest import mqtt_session
from generator.cli import main
from generator.core.app_image import DROM_START, IROM_START, app_description, pack_app_image
from generator.output.generate import generate
from generator.spec import load_spec
from generator.pki.spec_credentials import spec_credentials
from generator.pki.ota_signing import DOWNGRADE_PADDING, downgrade_message, sign_image, signing_key
from generator.pki.layout import PkiLayout
from test_ota_serve import SPEC, image, project  # noqa: F401 (the module's project fixture)

SENTINEL_TOPIC = "devices/sensor-a/status"


def signed_image(spec, tmp_path, version: str):
    unsigned, signed = tmp_path / f"{version}.unsigned.bin", tmp_path / f"{version}.bin"
    unsigned.write_bytes(image(spec, version=version))
    sign_image(unsigned, signed, signing_key(PkiLayout(spec.pki.dir)))
    return signed


def publish(spec, signed, version: str, *extra: str, broker=None) -> int:
    address = ["--broker", f"{broker.host}:{broker.port}"] if broker is not None else ["--broker", "127.0.0.1:9"]
    with pytest.raises(SystemExit) as done:
        main(["ota", "publish", str(spec.path), "--device", "sensor-a", "--image", str(signed), "--version", version,
              *address, *extra])
    return done.value.code


def staged(spec) -> set[str]:
    folder = spec.default_out_dir / "ota" / "sensor-a"
    return {path.name for path in folder.glob("*.bin")} if folder.is_dir() else set()


@pytest.fixture
def clean_staging(project):  # noqa: F811
    for path in (project.default_out_dir / "ota" / "sensor-a").glob("*.bin"):
        path.unlink()
    return project


def test_the_backend_cannot_announce_an_image_only_gens_ota_identity_can(project, start_broker):  # noqa: F811
    broker = start_broker(project.default_out_dir / "broker")
    credentials = spec_credentials(project)
    topic = project.device("sensor-a").ota.topic
    with mqtt_session(broker, credentials.devices["sensor-a"]) as device, \
            mqtt_session(broker, credentials.backend) as backend:
        device.subscribe(topic, qos=1)
        device.subscribe(SENTINEL_TOPIC, qos=1)
        backend.publish(topic, b'{"version":"1.1.0"}', qos=1, retain=True)
        backend.publish(SENTINEL_TOPIC, b"sentinel", qos=1)
        received = device.receive_until(SENTINEL_TOPIC)
    assert [m.topic for m in received] == [SENTINEL_TOPIC]


def test_an_older_version_than_the_specs_is_refused_with_exit_2_and_nothing_is_staged(clean_staging, tmp_path,
                                                                                       capsys):
    signed = signed_image(clean_staging, tmp_path, "1.1.0")
    assert publish(clean_staging, signed, "1.1.0") == 2
    err = capsys.readouterr().err
    assert "1.1.0 is older than sensor-a's firmware.version 1.2.0" in err and "--allow-downgrade" in err
    assert staged(clean_staging) == set()


def test_a_publish_that_cannot_reach_the_broker_stages_nothing(clean_staging, tmp_path, capsys):
    signed = signed_image(clean_staging, tmp_path, "1.3.0")
    assert publish(clean_staging, signed, "1.3.0") == 2           # port 9: nothing listens
    assert "cannot reach the broker at 127.0.0.1:9" in capsys.readouterr().err
    assert staged(clean_staging) == set()


def announced_downgrade(spec, signed, broker, *extra: str) -> dict:
    topic = spec.device("sensor-a").ota.topic
    with mqtt_session(broker, spec_credentials(spec).devices["sensor-a"]) as device:
        assert publish(spec, signed, "1.1.0", "--allow-downgrade", *extra, broker=broker) == 0
        device.subscribe(topic, qos=1)
        (message,) = device.receive_until(topic)
    return json.loads(message.payload)


def test_allow_downgrade_announces_an_older_version_as_a_deliberate_downgrade_for_a_week(clean_staging, tmp_path,
                                                                                         start_broker, capsys):
    broker = start_broker(clean_staging.default_out_dir / "broker")
    signed = signed_image(clean_staging, tmp_path, "1.1.0")
    announced = announced_downgrade(clean_staging, signed, broker)
    published = dt.datetime.now(dt.timezone.utc)
    assert set(announced) == {"version", "size", "sha256", "url", "target", "project", "downgrade"}
    assert announced["version"] == "1.1.0"
    assert staged(clean_staging) == {f"{announced['sha256']}.bin"}
    # The permission: while the device runs the spec's 1.2.0, for 7 days, the OTA key's signature of this device,
    # this image, this version, that version and that date (raises if it is not).
    not_after, from_version, signature = announced["downgrade"].split(":")
    expires = dt.datetime.fromtimestamp(int(not_after), dt.timezone.utc)
    assert from_version == "1.2.0"
    assert abs(expires - (published + dt.timedelta(days=7))) < dt.timedelta(minutes=1)
    public = serialization.load_pem_public_key(signing_key(PkiLayout(clean_staging.pki.dir)).public_pem())
    public.verify(base64.b64decode(signature),
                  downgrade_message("sensor-a", announced["sha256"], "1.1.0", "1.2.0", int(not_after)),
                  DOWNGRADE_PADDING, hashes.SHA256())
    out = " ".join(capsys.readouterr().out.split())
    assert f"permitted while the device runs 1.2.0, until {expires:%Y-%m-%d %H:%M:%S} UTC" in out, out


@pytest.mark.parametrize("days", [1, 365])
def test_downgrade_valid_for_sets_how_many_days_the_permission_holds(days, clean_staging, tmp_path, start_broker):
    broker = start_broker(clean_staging.default_out_dir / "broker")
    signed = signed_image(clean_staging, tmp_path, "1.1.0")
    announced = announced_downgrade(clean_staging, signed, broker, "--downgrade-valid-for", str(days))
    published = dt.datetime.now(dt.timezone.utc)
    expires = dt.datetime.fromtimestamp(int(announced["downgrade"].split(":")[0]), dt.timezone.utc)
    assert abs(expires - (published + dt.timedelta(days=days))) < dt.timedelta(minutes=1)


def test_downgrade_valid_for_without_allow_downgrade_is_refused_with_exit_2_and_nothing_is_staged(clean_staging,
                                                                                                  tmp_path, capsys):
    signed = signed_image(clean_staging, tmp_path, "1.1.0")
    assert publish(clean_staging, signed, "1.1.0", "--downgrade-valid-for", "30") == 2
    err = capsys.readouterr().err
    assert "--downgrade-valid-for" in err and "--allow-downgrade" in err and "Traceback" not in err
    assert staged(clean_staging) == set()


def test_a_downgrade_without_the_private_signing_key_is_refused_with_exit_2_and_nothing_is_staged(clean_staging,
                                                                                                   tmp_path, capsys):
    signed = signed_image(clean_staging, tmp_path, "1.1.0")
    private = signing_key(PkiLayout(clean_staging.pki.dir)).private
    away = tmp_path / "ota-signing-key.pem"
    private.rename(away)
    try:
        assert publish(clean_staging, signed, "1.1.0", "--allow-downgrade") == 2
    finally:
        away.rename(private)
    assert str(private) in capsys.readouterr().err
    assert staged(clean_staging) == set()


def test_a_newer_version_is_announced_without_the_downgrade_key(clean_staging, tmp_path, start_broker):
    broker = start_broker(clean_staging.default_out_dir / "broker")
    signed = signed_image(clean_staging, tmp_path, "1.3.0")
    topic = clean_staging.device("sensor-a").ota.topic
    with mqtt_session(broker, spec_credentials(clean_staging).devices["sensor-a"]) as device:
        assert publish(clean_staging, signed, "1.3.0", broker=broker) == 0
        device.subscribe(topic, qos=1)
        (message,) = device.receive_until(topic)
    assert "downgrade" not in json.loads(message.payload)


def test_only_the_current_and_the_previous_image_stay_staged(clean_staging, tmp_path, start_broker):
    broker = start_broker(clean_staging.default_out_dir / "broker")
    names = []
    for version in ("1.3.0", "1.4.0", "1.5.0"):
        signed = signed_image(clean_staging, tmp_path, version)
        assert publish(clean_staging, signed, version, broker=broker) == 0
        names.append(f"{hashlib.sha256(signed.read_bytes()).hexdigest()}.bin")
    assert staged(clean_staging) == set(names[1:])


@pytest.fixture(scope="module")
def secure_project(tmp_path_factory):
    """The project with app anti-rollback at secure version 2."""
    directory = tmp_path_factory.mktemp("ota-secure-version")
    (directory / "device.yaml").write_text(SPEC + "security:\n  flash_encryption: off\n  secure_version: 2\n")
    spec = load_spec(directory / "device.yaml")
    generate(spec, spec.default_out_dir)
    return spec


@pytest.mark.parametrize("version, extra", [("1.3.0", ()), ("1.1.0", ("--allow-downgrade",))])
def test_an_image_below_the_specs_secure_version_is_refused_with_exit_2_downgrade_or_not(secure_project, tmp_path,
                                                                                         capsys, version, extra):
    unsigned, signed = tmp_path / "unsigned.bin", tmp_path / "firmware.bin"
    payload = b"firmware " * 1000
    unsigned.write_bytes(pack_app_image("esp32", [
        (DROM_START["esp32"], app_description(version=version, project_name="firmware", idf_ver="v5.5.3",
                                              elf_sha256=hashlib.sha256(payload).digest(), secure_version=1)),
        (IROM_START["esp32"], payload)]))
    sign_image(unsigned, signed, signing_key(PkiLayout(secure_project.pki.dir)))
    assert publish(secure_project, signed, version, *extra) == 2
    err = capsys.readouterr().err
    assert f"{signed} has secure version 1 (its esp_app_desc_t), below the spec's security.secure_version 2" in err
    assert "Traceback" not in err
    assert staged(secure_project) == set()
