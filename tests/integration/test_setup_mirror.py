"""scripts/setup fetches Debian trixie's mbedTLS headers from the mirror the machine's own apt sources name, never
from a host written in the project (issue 26, item 12)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def mirror_of(apt_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/debian_mirror.py"), str(apt_dir)],
                          capture_output=True, text=True)


def test_the_mirror_is_the_debian_archive_of_a_deb822_sources_file_not_its_security_archive(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\n# a comment\nURIs: http://mirror.example.invalid/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    done = mirror_of(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://mirror.example.invalid/debian"


def test_the_mirror_is_read_from_a_one_line_sources_list_with_options(tmp_path):
    (tmp_path / "sources.list").write_text("# local\ndeb-src http://other.invalid/debian bookworm main\n"
                                          "deb [arch=amd64 signed-by=/k.gpg] https://m.invalid/debian bookworm main\n")
    assert mirror_of(tmp_path).stdout.strip() == "https://m.invalid/debian"


def test_a_machine_without_a_debian_archive_gets_a_sentence_and_exit_1(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://archive.ubuntu.invalid/ubuntu noble main\n")
    done = mirror_of(tmp_path)
    assert done.returncode == 1 and "GEN_DEBIAN_MIRROR" in done.stderr


def test_scripts_setup_names_no_package_mirror_host():
    assert not re.search(r"https?://", (ROOT / "scripts/setup").read_text())
