"""Which broker addresses `gen ota publish` and `gen ota status` talk to.

RabbitMQ keeps retained messages per node (../shared/reference/rabbitmq-cluster.md §10.5): an announcement retained
on one node is never seen by a device that subscribes on another. So on `broker.engine: rabbitmq` gen publishes
every retained message on every node, and reads the devices' retained reports from every node. Mosquitto is one
broker: one address. Pure: the caller reads the local cluster's record (`gen broker up`).

    cluster, nothing given, no local cluster   every broker.nodes name at broker.port, each checked as its own name
    cluster, `gen broker up` runs it locally   every local node (when --broker/GEN_BROKER/broker.local names one of
                                               its nodes, or nothing is given)
    cluster, --broker names another address    that one address: the user asked for one node (said, not silent)
    one Mosquitto                              --broker, or broker.host:broker.port
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from generator.doctor.probes import Address
from generator.spec.model import Broker

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class BrokerNode:
    address: Address
    server_name: str          # the name its certificate is checked for (what a device dialling it checks)
    label: str                # how messages name it

    @property
    def dialled(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


def _on_local_cluster(override: Address, local_cluster: Sequence[Address]) -> bool:
    host, port = override
    return any(port == node_port and (host == node_host or {host, node_host} <= set(LOOPBACK_NAMES))
               for node_host, node_port in local_cluster)


def broker_nodes(broker: Broker, override: Address | None = None,
                 local_cluster: Sequence[Address] = ()) -> tuple[BrokerNode, ...]:
    """The nodes to publish every retained message on and to read retained reports from (see the module's table).
    `override`: the local override of where the broker is (--broker, GEN_BROKER, broker.local); `local_cluster`:
    the MQTT addresses of the nodes `gen broker up` runs for this spec, in node order (empty: none runs)."""
    if not broker.clustered:
        address = override or (broker.host, broker.port)
        return (BrokerNode(address, broker.host, f"{address[0]}:{address[1]}"),)
    if local_cluster and (override is None or _on_local_cluster(override, local_cluster)):
        return tuple(BrokerNode(address, broker.host, f"local node {index} ({address[0]}:{address[1]})")
                     for index, address in enumerate(local_cluster, start=1))
    if override is not None:
        return (BrokerNode(override, broker.host, f"{override[0]}:{override[1]}"),)
    return tuple(BrokerNode((node, broker.port), node, f"{node}:{broker.port}") for node in broker.nodes)


def one_node_of_many(broker: Broker, nodes: Sequence[BrokerNode]) -> bool:
    """True when a cluster's retained messages go to one node only (an explicit --broker address that is not a node
    of the local cluster): the caller says that devices on the other nodes will not see them."""
    return broker.clustered and len(nodes) == 1 and len(broker.nodes) > 1
