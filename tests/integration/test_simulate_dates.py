"""Certificate dates, as each flavour's device checks them, against the real broker: an expired and a not-yet-valid
broker certificate (signed by a CA the device trusts, carrying the name it dials) are refused, the log saying which;
a device whose time source never answers does not connect and says why.

ESP-IDF checks dates in mbedTLS (CONFIG_MBEDTLS_HAVE_TIME_DATE=y in the generated sdkconfig.defaults, which the host
runtime honours); Arduino-ESP32 2.0.17's mbedTLS does not, so its firmware checks them in a verify callback of its
own (date_checking_client.h). The host runtime ignores dates wherever the device's mbedTLS would."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from generator.broker.render import CERT_FILE, KEY_FILE
from generator.pki import profiles
from simulate_support import SimDevice, simulated_project
from test_simulate_security import NVS_DEVICES, doctored_nvs, foreign_ca, pem

pytestmark = pytest.mark.slow

VERIFY_FAILED = "-0x2700"        # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED, as the firmware logs it
EXPIRED = {"arduino": "The certificate validity has expired", "espidf": "EXPIRED"}
FUTURE = {"arduino": "The certificate validity starts in the future", "espidf": "FUTURE"}
OTHER_REASONS = ("not correctly signed", "NOT_TRUSTED", "CN_MISMATCH", "Common Name")


@pytest.fixture(params=sorted(NVS_DEVICES))
def nvs_device(request, tmp_path_factory):
    name, secrets, device_id = NVS_DEVICES[request.param]
    return request.param, simulated_project(name, tmp_path_factory, secrets=secrets), device_id


def broker_with_certificate_valid_from(project, device_id, tmp_path, start_broker, *, starts: dt.datetime):
    """The project's broker presenting a 30-day certificate for the name the device dials, valid from `starts`,
    signed by a CA valid now; and the device's NVS image trusting that CA."""
    issuer = foreign_ca()
    host = project.spec.device(device_id).broker.host
    key = profiles.generate_key("ec-p256")
    cert = profiles.issue_broker_cert(key.public_key(), [host], issuer=issuer, validity_days=30, now=starts, project="x")
    broker_dir = tmp_path / "broker"
    shutil.copytree(project.broker_dir, broker_dir)
    (broker_dir / CERT_FILE).write_bytes(pem(cert))
    (broker_dir / KEY_FILE).write_bytes(profiles.private_key_pem(key))
    return start_broker(broker_dir), doctored_nvs(project, device_id, tmp_path, ca_pem=pem(issuer.cert))


def refusal(project, device_id, broker, nvs):
    with SimDevice.start(project.run_for(device_id, broker, GEN_SIM_NVS=str(nvs))) as device:
        device.wait_for(r"\[time\] synchronised")
        failure = device.wait_for(r"\[mqtt\] connect failed.*").group(0)
        summary = device.stop()
    assert summary.connects == 0, device.output()
    assert not any(reason in failure for reason in OTHER_REASONS), failure
    return failure


def test_an_expired_broker_certificate_is_refused_for_its_date(nvs_device, start_broker, tmp_path):
    flavour, project, device_id = nvs_device
    now = dt.datetime.now(dt.timezone.utc)
    broker, nvs = broker_with_certificate_valid_from(project, device_id, tmp_path, start_broker,
                                                     starts=now - dt.timedelta(days=60))
    failure = refusal(project, device_id, broker, nvs)
    assert VERIFY_FAILED in failure and EXPIRED[flavour] in failure, failure


def test_a_broker_certificate_not_valid_yet_is_refused_for_its_date(nvs_device, start_broker, tmp_path):
    flavour, project, device_id = nvs_device
    now = dt.datetime.now(dt.timezone.utc)
    broker, nvs = broker_with_certificate_valid_from(project, device_id, tmp_path, start_broker,
                                                     starts=now + dt.timedelta(days=2))
    failure = refusal(project, device_id, broker, nvs)
    assert VERIFY_FAILED in failure and FUTURE[flavour] in failure, failure


def test_a_device_whose_time_source_never_answers_stays_offline_and_says_why(nvs_device, start_broker):
    flavour, project, device_id = nvs_device
    broker = start_broker(project.broker_dir)
    run = project.run_for(device_id, broker, GEN_SIM_NO_TIME_SOURCE="1")
    with SimDevice.start(run) as device:
        device.wait_for(r"\[time\] no answer from \S+ for 10 s; MQTT waits for the clock \(the broker certificate's "
                        r"dates cannot be checked without it\)", timeout=25)
        device.wait_for(r"\[time\] no answer from \S+ for 20 s", timeout=25)      # still waiting, still saying so
        summary = device.stop()
    assert not any("[mqtt] connecting" in line for line in device.lines), device.output()
    assert summary.connects == 0
