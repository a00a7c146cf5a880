"""A device that makes its own key honours a provisioning answer's retry-after only up to an hour, in both flavours
(the real firmware on the host runtime, the real broker): a forged `busy` answer asking it to wait 25 days does not
park it. The answer is sent as the provisioning service's identity, as a stolen service key (or a service bug)
would send it."""

from __future__ import annotations

import pytest

from generator.spec.provisioning_protocol import REQUEST_FILTERS, Response, parse_request, parse_request_topic, \
    render_response, response_topic
from generator.spec import PROVISIONER_IDENTITY
from provision_support import LIFECYCLE_WAIT_S, ProvisionWorld

pytestmark = pytest.mark.slow
TWENTY_FIVE_DAYS_S = 25 * 24 * 3600


@pytest.fixture(params=["arduino-mtls", "espidf-mtls"])
def world(request, tmp_path) -> ProvisionWorld:
    return ProvisionWorld.create(tmp_path, request.param)


def test_a_forged_retry_after_of_25_days_is_capped_at_one_hour(world):
    with world.broker(), world.identity_session(PROVISIONER_IDENTITY) as provisioner:
        for topic_filter in REQUEST_FILTERS:
            provisioner.subscribe(topic_filter, qos=1)
        with world.device() as device:
            message = provisioner.messages.get(timeout=LIFECYCLE_WAIT_S)   # its first-boot request; no service runs
            channel, device_id = parse_request_topic(message.topic)
            request = parse_request(message.payload, topic_device_id=device_id)
            busy = Response("busy", device_id, request.request_id, retry_after=TWENTY_FIVE_DAYS_S, reason="busy")
            sent = provisioner.client.publish(response_topic(device_id, channel), render_response(busy), qos=1)
            sent.wait_for_publish(LIFECYCLE_WAIT_S)
            device.wait_for(rf"\[cred\] the service asks to wait {TWENTY_FIVE_DAYS_S} s; waiting at most 3600 s",
                            timeout=LIFECYCLE_WAIT_S)
            device.wait_for(r"\[cred\] service busy: busy \(asking again in 3600 s\)")
