"""The code base keeps its own rules: enumerations the schema names come from one place in the code and the two
agree; the type checker finds nothing."""

from __future__ import annotations

import json
from pathlib import Path

from generator.core.paths import SCHEMA_PATH
from generator.spec.device_limits import PUBLISH_QOS, SUBSCRIBE_QOS
from generator.spec.contract import KEY_TYPES
from generator.spec.contract import AUTH_MODES, BROKER_ENGINES, SECRETS_MODES

ROOT = Path(__file__).parent.parent.parent


def schema_enum(*path: str) -> list:
    node = json.loads(SCHEMA_PATH.read_text())["$defs"]
    for part in path:
        node = node[part]
    return node["enum"]


def test_the_schemas_enumerations_are_the_codes():
    assert schema_enum("auth") == list(AUTH_MODES)
    assert schema_enum("secrets") == list(SECRETS_MODES)
    assert schema_enum("pki", "properties", "key_type") == list(KEY_TYPES)
    assert schema_enum("broker", "properties", "engine") == list(BROKER_ENGINES)
    every_qos = sorted(set().union(*PUBLISH_QOS.values(), *SUBSCRIBE_QOS.values()))
    assert schema_enum("publish", "items", "properties", "qos") == every_qos
    assert schema_enum("subscribe", "items", "properties", "qos") == every_qos
