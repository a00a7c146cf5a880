"""The spec reference in the README, rendered from schema/device.schema.json so the two never drift apart.

    python -m generator.spec.reference            # print it
    python -m generator.spec.reference --update   # rewrite the section of README.md between the markers
"""

from __future__ import annotations

import json
import sys
from typing import Any

from generator.core.paths import PROJECT_ROOT
from generator.spec.schema_check import load_schema

START = ("<!-- spec-reference:start (generated from schema/device.schema.json; "
         "python -m generator.spec.reference --update) -->")
END = "<!-- spec-reference:end -->"


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    schema = load_schema()
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_text(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "")
    if isinstance(kind, list):
        return " or ".join(k for k in kind)
    if kind == "array":
        items = _resolve(node.get("items", {}))
        return f"list of {'mappings' if items.get('type') == 'object' else items.get('type', 'values')}"
    return kind or "mapping"


def _rows(properties: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    for key, raw in properties.items():
        node = _resolve(raw)
        name = f"{prefix}{key}"
        default = node.get("default")
        default_text = f"`{json.dumps(default)}`" if default is not None and default != [] else ""
        description = " ".join(str(node.get("description", "")).split())
        rows.append(f"| `{name}` | {_type_text(node)} | {default_text} | {description} |")
        if node.get("type") == "object" and "properties" in node and key not in ("device",):
            rows.extend(_rows(node["properties"], f"{name}."))
        items = _resolve(node.get("items", {})) if node.get("type") == "array" else {}
        if items.get("type") == "object" and "properties" in items and key not in ("devices",):
            rows.extend(_rows(items["properties"], f"{name}[]."))
    return rows


def render_spec_reference() -> str:
    schema = load_schema()
    top = dict(schema["properties"])
    device = _resolve(schema["$defs"]["device"])
    lines = [
        "Every key of a spec, with its default. `{id}` in a topic expands to the device id. "
        "`!secret name` reads `secrets.yaml` next to the spec; `${VAR}` reads the environment.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(top, ""),
        "",
        "A device entry (`device:` or each item of `devices:`) has these keys; all but `id` override the top level:",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(device["properties"], ""),
    ]
    return "\n".join(lines) + "\n"


def readme_with_reference(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{render_spec_reference()}{END}{tail}"


def main(argv: list[str]) -> int:
    if "--update" in argv:
        path = PROJECT_ROOT / "README.md"
        path.write_text(readme_with_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stdout.write(render_spec_reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
