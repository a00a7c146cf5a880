#!/usr/bin/env python3
"""Prints the Debian archive mirror this machine's own apt sources use (the URIs of its Debian entry), for
scripts/setup to fetch a package of another Debian release from the same place: no mirror host is written in the
project. Reads sources.list, sources.list.d/*.list (one-line style) and sources.list.d/*.sources (deb822) under
the apt folder given (default /etc/apt). The first `deb` source of a main Debian archive (its path ends in /debian,
its suite has no -security/-updates part) wins. Exit 1, with a sentence on stderr, when there is none."""

from __future__ import annotations

import sys
from pathlib import Path


def one_line_sources(text: str):
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = [w for w in words[1:] if not (w.startswith("[") or w.endswith("]") or "=" in w)]
        if len(words) >= 2:
            yield words[0], words[1:2]


def deb822_sources(text: str):
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def mirror(apt_dir: Path) -> str | None:
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list")),
             *sorted((apt_dir / "sources.list.d").glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        entries = deb822_sources(text) if path.suffix == ".sources" else one_line_sources(text)
        for uri, suites in entries:
            if uri.rstrip("/").endswith("/debian") and any("-" not in suite for suite in suites):
                return uri.rstrip("/")
    return None


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/etc/apt")
    found = mirror(folder)
    if found is None:
        print(f"no Debian archive among the apt sources in {folder}; set GEN_DEBIAN_MIRROR to a Debian mirror URL",
              file=sys.stderr)
        sys.exit(1)
    print(found)
