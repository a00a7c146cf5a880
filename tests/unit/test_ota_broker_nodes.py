"""Where gen's retained messages go and come from on a RabbitMQ cluster, which keeps them per node: the nodes
`gen ota publish`/`gen ota status` use (ota.nodes.broker_nodes), one device's status merged from what each node
holds (ota.status.merge_readings), and which identities `gen broker apply` finds re-keyed and re-creates on a
cluster (broker.sessions.re_keyed, broker.rabbitmq_render.definitions_of)."""

from __future__ import annotations

from generator.broker.rabbitmq_render import definitions_of
from generator.broker.sessions import re_keyed
from generator.core.paths import PROJECT_ROOT
from generator.ota.nodes import broker_nodes, one_node_of_many
from generator.ota.status import NodeReading, merge_readings
from generator.spec import load_spec

EXAMPLES = PROJECT_ROOT / "projects" / "examples"
CLUSTER = load_spec(EXAMPLES / "rabbitmq-cluster" / "device.yaml")
SINGLE = load_spec(EXAMPLES / "arduino-mtls" / "device.yaml")
LOCAL = [("127.0.0.1", 40001), ("127.0.0.1", 40002), ("127.0.0.1", 40003)]
REPORT = b'{"version":"1.0.0","slot":"ota_0","state":"running"}'


def addresses(nodes) -> list[tuple[str, int]]:
    return [node.address for node in nodes]


def test_a_cluster_without_a_local_one_is_reached_on_every_production_node_each_checked_as_its_own_name():
    nodes = broker_nodes(CLUSTER.broker)
    assert addresses(nodes) == [(host, CLUSTER.broker.port) for host in CLUSTER.broker.nodes]
    assert [node.server_name for node in nodes] == list(CLUSTER.broker.nodes)


def test_the_local_cluster_of_gen_broker_up_is_reached_on_all_its_nodes_when_no_override_is_given():
    assert addresses(broker_nodes(CLUSTER.broker, None, LOCAL)) == LOCAL


def test_an_override_naming_one_local_node_reaches_all_local_nodes_whether_it_says_localhost_or_127_0_0_1():
    assert addresses(broker_nodes(CLUSTER.broker, ("localhost", 40002), LOCAL)) == LOCAL
    assert addresses(broker_nodes(CLUSTER.broker, ("127.0.0.1", 40003), LOCAL)) == LOCAL


def test_an_override_that_is_no_local_node_reaches_that_one_address_and_is_flagged_as_one_node_of_many():
    nodes = broker_nodes(CLUSTER.broker, ("10.0.0.5", 8883), LOCAL)
    assert addresses(nodes) == [("10.0.0.5", 8883)]
    assert one_node_of_many(CLUSTER.broker, nodes)
    assert not one_node_of_many(CLUSTER.broker, broker_nodes(CLUSTER.broker, None, LOCAL))


def test_one_mosquitto_is_one_address_the_override_or_broker_host():
    assert addresses(broker_nodes(SINGLE.broker)) == [(SINGLE.broker.host, SINGLE.broker.port)]
    nodes = broker_nodes(SINGLE.broker, ("127.0.0.1", 18883), LOCAL)
    assert addresses(nodes) == [("127.0.0.1", 18883)] and not one_node_of_many(SINGLE.broker, nodes)


def test_the_status_of_the_one_node_that_says_online_wins_over_an_older_offline_elsewhere():
    device = CLUSTER.devices[0]
    merged = merge_readings(device, [NodeReading("n1", b"offline", b'{"version":"0.9.0"}'),
                                     NodeReading("n2", b"online", REPORT), NodeReading("n3", None, None)])
    assert (merged.link, merged.version, merged.slot, merged.state) == ("online", "1.0.0", "ota_0", "running")


def test_nodes_that_agree_give_their_value_and_no_node_at_all_is_never_seen():
    device = CLUSTER.devices[0]
    agreed = merge_readings(device, [NodeReading("n1", b"offline", REPORT), NodeReading("n2", b"offline", REPORT)])
    assert (agreed.link, agreed.version) == ("offline", "1.0.0")
    assert merge_readings(device, [NodeReading("n1", None, None)]).link == "never seen"


def test_two_nodes_that_both_say_online_with_different_reports_are_shown_as_disagreeing_not_guessed():
    device = CLUSTER.devices[0]
    merged = merge_readings(device, [NodeReading("n1", b"online", b'{"version":"0.9.0"}'),
                                     NodeReading("n2", b"online", REPORT)])
    assert merged.link == "unknown: the nodes disagree (n1: online, n2: online)" and merged.version is None


def test_an_identity_is_re_keyed_when_its_key_changed_since_the_last_apply_and_never_when_that_is_unknown():
    assert re_keyed({"a": "k1", "b": "k2"}, {"a": "k1", "b": "k3", "c": "k4"}) == ["b"]
    assert re_keyed(None, {"a": "k1"}) == []


def test_the_definitions_of_one_user_hold_its_user_its_permissions_and_its_topic_rules_only():
    definitions = {"users": [{"name": "a"}, {"name": "b"}], "permissions": [{"user": "a"}, {"user": "b"}],
                   "topic_permissions": [{"user": "b", "exchange": "amq.topic"}], "vhosts": [{"name": "/"}]}
    assert definitions_of(definitions, "b") == {"users": [{"name": "b"}], "permissions": [{"user": "b"}],
                                                "topic_permissions": [{"user": "b", "exchange": "amq.topic"}]}
