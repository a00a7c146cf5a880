"""gen simulate on a RabbitMQ cluster (broker.engine: rabbitmq): the devices dial each node by its own name, and
the host runtime's dialler (GEN_SIM_CONNECT_TO, first matching entry wins) sends each node name to that node's
loopback port, so a device that moves to the next name in its MQTT_HOSTS really reaches another node.

--kill-node-after S kills the first node (kill -9): every device starts on it (the first name of its list), so
every device has to fail over to another node.

Pure functions of the spec's broker and the nodes' ports; generator.simulate.run starts the cluster and applies them.
"""

from __future__ import annotations

from typing import Sequence

from generator.core.errors import UserError
from generator.spec.model import Broker

CONNECT_TO = "GEN_SIM_CONNECT_TO"
KILLED_NODE = 1          # 1-based: the node every device dials first


def node_routes(broker: Broker, ports: Sequence[int], address: str) -> str:
    """GEN_SIM_CONNECT_TO entries: each node name at the MQTT port goes to its own node's port; the broker's other
    names (the cluster's own name, names:) go to the first node. The device keeps verifying the name it dialled."""
    if len(ports) != len(broker.dial_hosts):
        raise ValueError(f"{len(broker.dial_hosts)} node names, {len(ports)} node ports")
    routes = dict(zip(broker.dial_hosts, ports))
    for name in (broker.host, *broker.names):
        routes.setdefault(name, ports[0])
    return ",".join(f"{name}:{broker.port}:{address}:{port}" for name, port in routes.items())


def routed_to_nodes(environment: tuple[tuple[str, str], ...], routes: str) -> tuple[tuple[str, str], ...]:
    """A device's environment with the node routes ahead of its other GEN_SIM_CONNECT_TO entries."""
    return tuple((name, f"{routes},{value}" if name == CONNECT_TO and value else
                  routes if name == CONNECT_TO else value) for name, value in environment)


def check_kill_node(broker: Broker, *, kill_node_after: float | None, own_broker: bool,
                    restart_broker_after: float | None = None) -> None:
    """--kill-node-after needs a cluster that gen simulate runs itself; a cluster has no one broker to restart."""
    if broker.clustered and restart_broker_after is not None:
        raise UserError("--restart-broker-after restarts one Mosquitto process, but this spec's broker is a "
                        "RabbitMQ cluster", hint="use --kill-node-after S to kill one of its nodes")
    if kill_node_after is None:
        return
    if not broker.clustered:
        raise UserError("--kill-node-after kills a node of a RabbitMQ cluster, but this spec's broker is one "
                        "Mosquitto process",
                        hint="use --restart-broker-after, or set broker.engine: rabbitmq with broker.nodes")
    if own_broker:
        raise UserError("--kill-node-after needs the cluster gen simulate starts itself",
                        hint="drop --broker")
