"""broker.engine: rabbitmq, rendered (no broker runs here): the spec's rules for a cluster, the files of OUT/broker/,
and the topic rules RabbitMQ will enforce (the real cluster proves them in test_broker_rabbitmq_cluster.py)."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from generator.broker.rabbitmq_render import amqp_topic, filter_regex, topic_permission
from generator.broker.render import AclRule, AclSection, server_acl_sections
from generator.spec import load_spec

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "projects" / "examples" / "rabbitmq-cluster"


def gen(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("render") / "rabbitmq-cluster"
    shutil.copytree(EXAMPLE, directory)
    result = gen("generate", directory / "device.yaml")
    assert result.returncode == 0, result.stderr
    return directory / "build" / "broker"


def test_the_broker_certificate_carries_every_node_name(generated):
    text = subprocess.run(["openssl", "x509", "-in", generated / "broker.pem", "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout
    for node in ("mq1.example.com", "mq2.example.com", "mq3.example.com"):
        assert f"DNS:{node}" in text


def test_every_node_gets_its_own_config_and_the_crl_sits_under_the_name_openssl_hashes_it_to(generated):
    assert sorted(path.name for path in (generated / "nodes").iterdir()) == [
        "mq1.example.com", "mq2.example.com", "mq3.example.com"]
    node = generated / "nodes" / "mq2.example.com"
    assert "NODENAME=rabbit@mq2.example.com" in (node / "rabbitmq-env.conf").read_text()
    advanced = (node / "advanced.config").read_text()
    for option in ("cacertfile", "certfile", "keyfile", "verify_peer", "fail_if_no_peer_cert", "crl_check",
                   "ssl_crl_hash_dir"):
        assert option in advanced
    expected = subprocess.run(["openssl", "crl", "-in", generated / "crl.pem", "-noout", "-hash"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert [path.name for path in (generated / "crl").iterdir()] == [f"{expected}.r0"]


def test_the_cookie_key_and_admin_password_are_private_and_no_mqtt_user_has_a_password(generated):
    for name in ("erlang.cookie", "broker.key", "admin.password"):
        assert stat.S_IMODE((generated / name).stat().st_mode) == 0o600
    definitions = json.loads((generated / "definitions.json").read_text())
    with_password = [user["name"] for user in definitions["users"] if user["password_hash"]]
    assert with_password == ["gen.admin"]
    (admin,) = [permission for permission in definitions["permissions"] if permission["user"] == "gen.admin"]
    assert (admin["write"], admin["read"]) == ("^$", "^$")      # it deletes session queues; no message in or out
    assert re.match(admin["configure"], "mqtt-subscription-truck-01qos1") and not re.match(admin["configure"], "x")
    users = {user["name"] for user in definitions["users"]}
    assert {f"truck-0{n}" for n in range(1, 7)} | {"backend", "gen.doctor"} <= users
    assert users == {rule["user"] for rule in definitions["topic_permissions"]} | {"gen.admin"}


def test_a_devices_topic_rules_match_its_own_topics_and_no_other_devices(generated):
    definitions = json.loads((generated / "definitions.json").read_text())
    rules = next(rule for rule in definitions["topic_permissions"] if rule["user"] == "truck-01")
    assert re.search(rules["write"], "fleet.truck-01.telemetry")
    assert re.search(rules["write"], "fleet.truck-01.status")
    assert not re.search(rules["write"], "fleet.truck-02.telemetry")
    assert not re.search(rules["write"], "fleet.truck-01.cmd")
    assert re.search(rules["read"], "fleet.truck-01.cmd")
    assert not re.search(rules["read"], "fleet.#")
    assert not re.search(rules["read"], "fleet.*.cmd")


def test_a_deny_rule_and_a_multi_level_wildcard_become_anchored_regular_expressions():
    section = AclSection("doctor", (AclRule("deny", "fleet/a/ota"), AclRule("readwrite", "fleet/#")))
    rules = topic_permission(section)
    assert re.search(rules["write"], "fleet.a.telemetry") and re.search(rules["read"], "fleet.#")
    assert re.search(rules["write"], "fleet")
    assert not re.search(rules["write"], "fleet.a.ota")
    assert not re.search(rules["write"], "fleetx.a")
    assert amqp_topic("a/b.c/+") == "a.b/c.*"
    assert filter_regex("a/+/c") == r"a\.[^.]+\.c"


@pytest.mark.parametrize("broker, problem", [
    ("  host: mq.example.com\n  nodes: [a.example.com]\n", "add `engine: rabbitmq`"),
    ("  host: mq.example.com\n  engine: rabbitmq\n", "needs the host names of its nodes"),
    ("  host: mq.example.com\n  engine: rabbitmq\n  nodes: [a.example.com, a.example.com]\n", "listed twice"),
    ("  host: mq.example.com\n  engine: rabbitmq\n  nodes: [a.example.com]\n  plaintext_port: 1883\n",
     "is a Mosquitto setting"),
])
def test_a_cluster_spec_mistake_is_a_clear_error_with_its_place(tmp_path, broker, problem):
    spec = tmp_path / "device.yaml"
    spec.write_text("project: p\ntarget: esp32-arduino\nwifi: {ssid: s, password: '12345678'}\nbroker:\n" + broker
                    + "device:\n  id: d1\n")
    result = gen("check", spec)
    assert result.returncode == 2, result.stdout + result.stderr
    assert problem in result.stderr and "device.yaml:" in result.stderr


def test_a_cluster_refuses_password_logins(tmp_path):
    spec = tmp_path / "device.yaml"
    spec.write_text("project: p\ntarget: esp32-arduino\nwifi: {ssid: s, password: '12345678'}\nbroker:\n"
                    "  host: mq.example.com\n  engine: rabbitmq\n  nodes: [a.example.com]\nauth: password\n"
                    "device:\n  id: d1\n")
    result = gen("check", spec)
    assert result.returncode == 2 and "certificate only" in result.stderr


def test_gen_doctors_probe_client_id_may_subscribe_with_the_devices_identity():
    from generator.broker.rabbitmq_render import DOCTOR_PROBE_SUFFIX
    from generator.doctor.material import PROBE_CLIENT_SUFFIX

    assert DOCTOR_PROBE_SUFFIX == PROBE_CLIENT_SUFFIX


def test_a_backends_subscription_to_the_fleets_prefix_is_granted_on_a_cluster_with_ota(tmp_path):
    """gen's OTA topics (devices/<id>/ota) lie outside a spec's own prefix (fleet/): RabbitMQ checks the filter
    `fleet.#` itself against the backend's read rule (a refused one closes the connection), so the rule must be the
    prefix, not each topic; the OTA topics stay closed to the backend."""
    project = tmp_path / "cluster"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("pki", "build"))
    spec_file = project / "device.yaml"
    spec_file.write_text(spec_file.read_text().replace("\ndevices:\n", "\nota: {}\ndevices:\n"))
    (backend,) = [s for s in server_acl_sections(load_spec(spec_file)) if s.username == "backend"]
    permission = topic_permission(backend)
    for access in ("read", "write"):
        assert re.match(permission[access], "fleet.#") and re.match(permission[access], "fleet.truck-01.cmd")
        assert not re.match(permission[access], "devices.truck-01.ota")
