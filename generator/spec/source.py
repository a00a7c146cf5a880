"""Reading a spec file: YAML with positions kept for every value, `!secret name` and `${VAR}` resolved.

The result is plain data (dicts, lists, scalars) plus where each value came from, so that every later error can
name file:line:column. Secrets are resolved here and remembered, so that output can mask them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.core.errors import UserError

SECRETS_FILE = "secrets.yaml"
SECRET_MASK = "******"         # what every message and view shows in place of a value from secrets.yaml

# What a spec (or its secrets.yaml) may hold. Far above any real fleet (a 30,000-device spec is ~90,000 nodes,
# about 0.7 MiB), low enough that a hostile file is refused in well under a second and a few MB of memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 100_000            # after aliases are expanded: `*a` counts every node of what it names
MAX_DEPTH = 32                 # the spec's own nesting is 5
MAX_SCALAR_CHARS = 65_536      # an MQTT topic is at most 65,535 bytes

# What `!secret` reads as when a spec is loaded without its secrets (a CI build of `secrets: nvs` app images, which
# hold no secret): valid as a WiFi name and passphrase, and never written into anything a device runs.
SECRET_PLACEHOLDER = "gen-placeholder-secret"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

SpecPath = tuple  # a path inside the spec: ("devices", 1, "wifi", "password")


@dataclass(frozen=True)
class Position:
    file: Path
    line: int    # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class SpecSource:
    """A spec as read from disk: plain data plus the position of every value and key."""

    path: Path
    data: Any
    value_positions: dict[SpecPath, Position] = field(default_factory=dict)
    key_positions: dict[SpecPath, Position] = field(default_factory=dict)
    secret_values: set[str] = field(default_factory=set)
    env_names: set[str] = field(default_factory=set)     # the environment variables it names (${VAR})

    def position(self, path: SpecPath, *, of_key: bool = False) -> Position:
        """The position of `path`, or of its nearest ancestor that is written in the file (defaults are not)."""
        path = tuple(path)
        table = self.key_positions if of_key else self.value_positions
        while path:
            if path in table:
                return table[path]
            if path in self.value_positions:
                return self.value_positions[path]
            path = path[:-1]
        return self.value_positions.get((), Position(self.path, 1, 1))


def format_spec_path(path: SpecPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class SpecProblem(Exception):
    """One problem at one place of a spec; collected into a UserError by the caller."""

    def __init__(self, path: SpecPath, message: str, hint: str | None = None, *, of_key: bool = False):
        super().__init__(message)
        self.path = tuple(path)
        self.message = message
        self.hint = hint
        self.of_key = of_key


def problems_to_error(source: SpecSource, problems: list[SpecProblem]) -> UserError:
    ordered = sorted(
        problems,
        key=lambda p: (source.position(p.path, of_key=p.of_key).line, source.position(p.path, of_key=p.of_key).column),
    )
    lines = []
    seen: set[str] = set()
    for problem in ordered:        # two checks may find the same thing (a schema and a resolver): say it once
        where = source.position(problem.path, of_key=problem.of_key)
        said = f"{where}: {format_spec_path(problem.path)}: {problem.message}"
        if said in seen:
            continue
        seen.add(said)
        lines.append(said)
        if problem.hint:
            lines.append(f"    fix: {problem.hint}")
    count = len(seen)
    header = f"{source.path} is not a valid spec ({count} problem{'s' if count != 1 else ''}):"
    hint = None
    if Path(source.path).name == SECRETS_FILE:
        hint = f"{source.path} holds the spec's secrets; pass the spec that names them (e.g. device.yaml next to it)"
    return UserError(mask_secret_values(header + "\n" + "\n".join(lines), source.secret_values), hint=hint)


def mask_secret_values(text: str, secret_values: set[str]) -> str:
    """Every value that came from secrets.yaml, replaced wherever it would appear in a message."""
    for secret in sorted(secret_values, key=len, reverse=True):
        text = text.replace(secret, SECRET_MASK)
    return text


def check_yaml_limits(path: Path, text: str, loader_class: type | None = None) -> None:
    """Refuses YAML whose expansion, node count, depth or scalar size exceed the limits above, naming the line.
    Runs over the parser's events (no recursion, no nodes built), so it is linear in the file's size: an alias
    bomb ("billion laughs") is measured by counting, never by expanding it."""
    loader = (loader_class or _SpecLoader)(text)
    sizes: dict[str, int] = {}          # anchor -> nodes it stands for, expanded
    open_nodes: list[list] = []         # [anchor, nodes so far] of each mapping/sequence being read
    total = 0

    def refuse(event: yaml.Event, what: str, hint: str) -> UserError:
        return UserError(f"{_position(path, event.start_mark)}: {what}", hint=hint)

    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_nodes.append([event.anchor, 1])
                if len(open_nodes) > MAX_DEPTH:
                    raise refuse(event, f"nested more than {MAX_DEPTH} levels deep",
                                 "a spec is a few levels deep; check the brackets and indentation")
                added = 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, count = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = count
                if open_nodes:
                    open_nodes[-1][1] += count
                continue
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR_CHARS:
                    raise refuse(event, f"a value of {len(event.value):,} characters (at most {MAX_SCALAR_CHARS:,})",
                                 "no spec value is that long; check for an unclosed quote")
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                added = 1
            elif isinstance(event, yaml.AliasEvent):
                added = sizes.get(event.anchor, 1)
            else:
                continue
            if open_nodes and not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_nodes[-1][1] += added
            total += added
            if total > MAX_NODES:
                raise refuse(event, f"more than {MAX_NODES:,} values once its aliases (*name) are expanded",
                             "a spec that big is not a device spec; anchors that name each other multiply")
    except yaml.YAMLError as error:
        raise _yaml_error(path, error, text)
    finally:
        loader.dispose()


def read_yaml_text(path: Path, what: str) -> str:
    """A YAML file's text: a regular file, at most MAX_FILE_BYTES, UTF-8, not binary. UserError otherwise."""
    try:
        if path.is_dir():
            raise UserError(f"{path} is a directory, not a {what}", hint=f"pass {path / 'device.yaml'}")
        if path.exists() and not path.is_file():
            raise UserError(f"{path} is not a regular file (a device or a pipe?)", hint=f"pass the {what} itself")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist",
                        hint="give the path of a device.yaml, or create one with `gen new NAME`")
    except OSError as error:
        raise UserError(f"cannot read {what} {path}: {error.strerror}", hint="check the file's owner and mode")
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; that is not a {what}",
                        hint=f"check that {path} is the file you meant")
    def where(offset: int) -> str:
        line, column = data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)
        return f"{path}:{line}:{column}"

    nul = data.find(b"\0")
    if nul >= 0:
        raise UserError(f"{where(nul)}: is a binary file (a NUL byte), not YAML", hint=f"pass the {what} itself")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{where(error.start)}: is not UTF-8 text ({error.reason})", hint="save the file as UTF-8")


class _SecretTag(str):
    """Marks a scalar written as `!secret name` until it is looked up."""


def _construct_secret(loader: yaml.SafeLoader, node: yaml.Node) -> _SecretTag:
    return _SecretTag(loader.construct_scalar(node))


# libyaml's parser when PyYAML has it (it keeps the same marks), else the pure-Python one.
class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


_SpecLoader.add_constructor("!secret", _construct_secret)


def _position(path: Path, mark: yaml.Mark) -> Position:
    return Position(path, mark.line + 1, mark.column + 1)


class _Reader:
    def __init__(self, path: Path, environ: dict[str, str], loader: yaml.SafeLoader, *, without_secrets: bool = False):
        self.path = path
        self.environ = environ
        self.without_secrets = without_secrets
        self._loader = loader
        self.source = SpecSource(path=path, data=None)
        self.problems: list[SpecProblem] = []
        self._secrets: dict[str, Any] | None = None

    # --- secrets.yaml -------------------------------------------------------------------------------------
    def secrets(self, where: SpecPath) -> dict[str, Any]:
        if self._secrets is None:
            secrets_path = self.path.parent / SECRETS_FILE
            if not secrets_path.is_file():
                raise SpecProblem(
                    where,
                    f"uses !secret but {secrets_path} does not exist",
                    f"create {SECRETS_FILE} next to the spec with `name: value` lines (keep it out of git)",
                )
            text = read_yaml_text(secrets_path, "secrets file")
            check_yaml_limits(secrets_path, text, yaml.SafeLoader)
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise _yaml_error(secrets_path, error, text)
            except ValueError as error:  # e.g. an integer of thousands of digits
                raise UserError(f"{secrets_path}: a value cannot be read: {error}", hint="quote it as a string")
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise UserError(f"{secrets_path}: must be a mapping of `name: value` lines")
            self._secrets = loaded
        return self._secrets

    # --- node walk ----------------------------------------------------------------------------------------
    def read(self, node: yaml.Node, path: SpecPath) -> Any:
        self.source.value_positions[path] = _position(self.path, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(SpecProblem(path, "YAML merge keys (<<) are not supported",
                                                     "write the keys out"))
                    continue
                key = self._scalar(key_node, path)
                if not isinstance(key, str):
                    self.source.value_positions[path + (str(key),)] = _position(self.path, key_node.start_mark)
                    self.problems.append(SpecProblem(path + (str(key),), f"key {key!r} must be a string"))
                    continue
                child = path + (key,)
                self.source.key_positions[child] = _position(self.path, key_node.start_mark)
                if key in result:
                    self.source.value_positions[child + ("(duplicate)",)] = _position(self.path, key_node.start_mark)
                    self.problems.append(
                        SpecProblem(child + ("(duplicate)",), f"key {key!r} appears twice in this mapping",
                                    "keep one of them")
                    )
                    continue
                try:
                    result[key] = self.read(value_node, child)
                except SpecProblem as problem:
                    self.problems.append(problem)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                try:
                    items.append(self.read(item, path + (index,)))
                except SpecProblem as problem:
                    self.problems.append(problem)
                    items.append(None)
            return items
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: SpecPath) -> Any:
        try:
            value = self._loader.construct_object(node, deep=True)
        except ValueError:  # Python refuses to turn more than 4,300 digits into an int
            raise SpecProblem(path, f"is a number of {len(node.value):,} digits, far beyond any setting's range",
                              "write the number you meant, or quote it if it is text")
        if isinstance(value, _SecretTag):
            if self.without_secrets:
                return SECRET_PLACEHOLDER
            name = str(value)
            secrets = self.secrets(path)
            if name not in secrets:
                raise SpecProblem(
                    path,
                    f"!secret {name!r} is not defined in {self.path.parent / SECRETS_FILE}",
                    f"add a line `{name}: ...` to {SECRETS_FILE}",
                )
            secret = secrets[name]
            if isinstance(secret, (dict, list)) or secret is None:
                raise SpecProblem(path, f"!secret {name!r} must be a single value, not {type(secret).__name__}")
            if isinstance(secret, str) and secret:
                self.source.secret_values.add(secret)
            return secret
        if isinstance(value, str) and "${" in value:
            return self._expand_env(value, path)
        return value

    def _expand_env(self, text: str, path: SpecPath) -> str:
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            self.source.env_names.add(name)
            if name not in self.environ:
                raise SpecProblem(path, f"environment variable ${{{name}}} is not set",
                                  f"export {name}=... before running, or write the value in the spec")
            return self.environ[name]

        return _ENV_REFERENCE.sub(substitute, text)


def read_spec_source(path: Path, environ: dict[str, str] | None = None, *, without_secrets: bool = False) -> SpecSource:
    """Reads a spec file. Raises UserError naming file:line:column for anything that is not readable YAML.
    `without_secrets`: every `!secret` reads as SECRET_PLACEHOLDER and secrets.yaml is not opened."""
    path = Path(path)
    text = read_yaml_text(path, "spec")
    check_yaml_limits(path, text)
    loader = _SpecLoader(text)
    reader = _Reader(path, dict(os.environ) if environ is None else environ, loader, without_secrets=without_secrets)
    try:
        root = loader.get_single_node()
        if root is None:
            raise UserError(f"{path}:1:1: the spec is empty",
                            hint="start from `gen new NAME`, or copy an example from projects/examples/")
        reader.source.data = reader.read(root, ())
    except yaml.YAMLError as error:
        raise _yaml_error(path, error, text)
    finally:
        loader.dispose()
    if reader.problems:
        raise problems_to_error(reader.source, reader.problems)
    return reader.source


def _yaml_error(path: Path, error: yaml.YAMLError, text: str = "") -> UserError:
    """A YAML syntax or tag error, at the line and column PyYAML points to."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. a control character
        line = text.count("\n", 0, error.position) + 1
        column = error.position - text.rfind("\n", 0, error.position)
        return UserError(f"{path}:{line}:{column}: not valid YAML: character U+{error.character:04X} is not allowed",
                         hint="remove it; in a quoted string write it as \\xNN")
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return UserError(f"{where}: not valid YAML: {detail}", hint="check the indentation and quoting at that line")
