"""Validation against schema/device.schema.json, with each error turned into a problem at its place in the file."""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from typing import Any

import jsonschema

from generator.core.paths import SCHEMA_PATH
from generator.spec.source import SpecProblem, SpecSource

_TYPE_NAMES = {"string": "a string", "integer": "a whole number", "boolean": "true or false", "array": "a list",
               "object": "a mapping", "null": "null", "number": "a number"}


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def schema_default(*path: str) -> Any:
    """A default value as the schema states it, e.g. schema_default('status', 'topic'). One place for defaults."""
    node: Any = load_schema()["$defs"][path[0]]
    for key in path[1:]:
        node = node.get("items", node)["properties"][key]
    if "$ref" in node:
        ref = node["$ref"].removeprefix("#/").split("/")
        node = load_schema()
        for part in ref:
            node = node[part]
    return node["default"]


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "empty (null)"


def _shown(value: Any, source: SpecSource) -> str:
    if isinstance(value, str) and value in source.secret_values:
        return "(a secret)"
    return json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else _type_of(value)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(choices))}"


def _problems_of(error: jsonschema.ValidationError, source: SpecSource) -> list[SpecProblem]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = [key for key in error.instance if key not in known]
        return [
            SpecProblem(path + (key,), f"unknown key {key!r}; {_did_you_mean(key, known)}", of_key=True)
            for key in extra
        ]
    if kind == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return [SpecProblem(path, f"missing required key {key!r}", f"add `{key}:` here") for key in missing]
    if kind == "dependentRequired":
        return [SpecProblem(path + (key,), f"`{key}` needs `{needed}` as well", f"add `{needed}:` next to `{key}:`",
                            of_key=True)
                for key, needs in error.validator_value.items() if key in error.instance
                for needed in needs if needed not in error.instance]
    if kind == "oneOf" and path == ():
        both = "device" in error.instance and "devices" in error.instance
        return [SpecProblem((), "has both `device:` and `devices:`" if both else "has neither `device:` nor `devices:`",
                            "give `device: {id: ...}` for one device, or `devices: [{id: ...}, ...]` for a fleet")]
    if kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        names = " or ".join(_TYPE_NAMES.get(w, str(w)) for w in wanted if w != "null")
        hint = ("quote it (\"...\") so YAML reads it as text"
                if "string" in wanted and isinstance(error.instance, (int, float, bool)) else None)
        return [SpecProblem(path, f"must be {names}, not {_type_of(error.instance)} "
                                  f"({_shown(error.instance, source)})", hint)]
    if kind == "enum":
        allowed = [str(v) for v in error.validator_value]
        guess = difflib.get_close_matches(str(error.instance), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {guess[0]!r}?" if guess else None
        return [SpecProblem(path, f"is {_shown(error.instance, source)}; must be one of {', '.join(allowed)}", hint)]
    if kind == "pattern" and path == ("project",):
        return [SpecProblem(path, f"{_shown(error.instance, source)} is not a usable project name",
                            "use letters, digits, '-' and '_' (it names files and the CA)")]
    if kind in ("minimum", "maximum"):
        return [SpecProblem(path, f"is {error.instance}; the {kind} is {error.validator_value}")]
    if kind in ("minLength",):
        return [SpecProblem(path, "must not be empty")]
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return [SpecProblem(path, f"must have {bound} {error.validator_value} "
                                  f"entr{'y' if error.validator_value == 1 else 'ies'}")]
    return [SpecProblem(path, error.message)]


def schema_problems(source: SpecSource) -> list[SpecProblem]:
    validator = jsonschema.Draft202012Validator(load_schema())
    problems: list[SpecProblem] = []
    for error in validator.iter_errors(source.data):
        problems.extend(_problems_of(error, source))
    return problems
