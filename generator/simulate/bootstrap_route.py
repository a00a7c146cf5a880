"""Where the bootstrap listener (devices that make their own key) of a broker given with `gen simulate --broker`
is: `gen broker up`'s, when its record in OUT says it runs at that address; otherwise the same host at the spec's
broker.provision_port, the port `gen broker up` and an installed broker open. Without it the simulated devices
dial the production name for their CSR and loop on "could not resolve"."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from generator.broker.apply import BrokerUpRecord
from generator.output.layout import BROKER_UP_RECORD
from generator.spec import Spec

if TYPE_CHECKING:
    from generator.simulate.device_runs import BrokerAddress


def with_bootstrap_port(spec: Spec, out_dir: Path, given: "BrokerAddress") -> "BrokerAddress":
    """`given` with its bootstrap port filled in, when a device of the spec makes its own key."""
    if given.provision_port is not None or not spec.provisions_devices:
        return given
    record = BrokerUpRecord.read(Path(out_dir) / BROKER_UP_RECORD)
    if record is not None and record.port == given.port and record.provision_port is not None:
        return dataclasses.replace(given, provision_port=record.provision_port)
    return dataclasses.replace(given, provision_port=spec.broker.provision_port)
