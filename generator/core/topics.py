"""MQTT topic names and filters: expansion of `{id}`, validity (MQTT 3.1.1 §4.7 plus what Mosquitto's acl_file can
express), and matching. Everything that reasons about topics (spec rules, ACL, doctor) calls these."""

from __future__ import annotations

import re
from typing import Iterable

ID_PLACEHOLDER = "{id}"
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
MAX_TOPIC_BYTES = 65535


def expand_topic(template: str, device_id: str) -> str:
    return template.replace(ID_PLACEHOLDER, device_id)


def unknown_placeholders(template: str) -> list[str]:
    return [p for p in _PLACEHOLDER.findall(template) if p != ID_PLACEHOLDER]


# Any character the loop below refuses (controls, C1 controls, white space) matches this.
_SUSPECT = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def _common_problem(topic: str) -> str | None:
    if not topic:
        return "is empty"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"is longer than {MAX_TOPIC_BYTES} bytes"
    for ch in topic if _SUSPECT.search(topic) else ():   # the character loop only where one may be wrong
        if ch == "\0":
            return "contains a NUL character, which MQTT forbids"
        if ord(ch) < 0x20 or ord(ch) == 0x7F or 0x80 <= ord(ch) <= 0x9F:
            return f"contains the control character {ch!r}, which breaks Mosquitto's acl_file lines"
        if ch.isspace():
            return (f"contains white space ({ch!r}); Mosquitto's acl_file splits lines on spaces, "
                    "so its ACL could not name it")
    if topic.startswith("$"):
        return "starts with '$', which is reserved for the broker ($SYS)"
    return None


def topic_name_problem(topic: str) -> str | None:
    """Why `topic` cannot be published to, or None when it can."""
    problem = _common_problem(topic)
    if problem:
        return problem
    if "+" in topic or "#" in topic:
        return "contains a wildcard (+ or #); a publish topic must name one topic"
    return None


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why `topic_filter` is not a valid subscription filter, or None when it is."""
    problem = _common_problem(topic_filter)
    if problem:
        return problem
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "uses '#' other than as the whole last level (write a/b/#)"
        if "+" in level and level != "+":
            return "uses '+' inside a level; '+' must be a whole level (write a/+/c)"
    return None


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether a subscription to `topic_filter` receives messages published to `topic` (MQTT 3.1.1 §4.7)."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


class TopicIndex:
    """Topic names with an owner each, searchable by filter without scanning them all (a trie over levels), so
    fleet rules stay fast for thousands of devices."""

    def __init__(self) -> None:
        self._root: dict = {}
        self._owners: dict[str, str] = {}

    def owner(self, topic: str) -> str | None:
        return self._owners.get(topic)

    def add(self, topic: str, owner: str) -> None:
        if topic in self._owners:
            return
        self._owners[topic] = owner
        node = self._root
        for level in topic.split("/"):
            node = node.setdefault(level, {})
        node[None] = topic  # the key None marks "a topic ends here"

    def matching(self, topic_filter: str):
        """Yields (topic, owner) for every indexed topic that `topic_filter` matches (MQTT 3.1.1 §4.7)."""
        levels = topic_filter.split("/")

        def walk(node: dict, index: int, top: bool):
            if index == len(levels):
                if None in node:
                    yield node[None]
                return
            level = levels[index]
            if level == "#":
                # '#' matches the parent level itself and everything below it; not $-topics from the top.
                stack = [(node, top)]
                while stack:
                    current, at_top = stack.pop()
                    if None in current and current is not self._root:
                        yield current[None]
                    for key, child in current.items():
                        if key is not None and not (at_top and key.startswith("$")):
                            stack.append((child, False))
                return
            children = ((k, c) for k, c in node.items() if k is not None) if level == "+" else (
                [(level, node[level])] if level in node else [])
            for key, child in children:
                if level == "+" and top and key.startswith("$"):
                    continue
                yield from walk(child, index + 1, False)

        for topic in walk(self._root, 0, True):
            yield topic, self._owners[topic]


def common_topic_prefix(topics: Iterable[str]) -> str | None:
    """The longest wildcard-free run of leading levels shared by every topic, or None if they share none."""
    level_lists = [topic.split("/") for topic in topics]
    if not level_lists:
        return None
    prefix: list[str] = []
    for levels in zip(*level_lists):
        level = levels[0]
        if any(other != level for other in levels) or "+" in level or "#" in level or level == "":
            break
        prefix.append(level)
    return "/".join(prefix) or None


def by_first_level(topics: Iterable[str]) -> list[list[str]]:
    """The topics grouped by their first level, in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for topic in topics:
        groups.setdefault(topic.split("/", 1)[0], []).append(topic)
    return list(groups.values())
