"""The order anti-rollback relies on: the firmware's C comparator (gen_link's version_order.h) and `gen ota
publish`'s (generator.spec.firmware_version.version_order) agree on the same pairs, SemVer 2.0's examples and git describe's versions
among them, and both refuse to order what is not MAJOR.MINOR.PATCH."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.firmware.render import link_library
from generator.spec.firmware_version import version_order

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "version_order.h"
int main(void) {
    char a[64], b[64];
    while (fgets(a, sizeof a, stdin) && fgets(b, sizeof b, stdin)) {
        a[strcspn(a, "\n")] = '\0';
        b[strcspn(b, "\n")] = '\0';
        int order = 0;
        if (version_order(a, b, &order)) {
            printf("%d\n", order);
        } else {
            printf("none\n");
        }
    }
    return 0;
}
"""
# SemVer 2.0's precedence example, then git describe's shapes around a release, then a leading v and numbers.
ASCENDING = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.0-dirty", "1.0.0-3-gabc1234", "1.0.0-3-gabc1234-dirty", "1.0.0-12-g0123abcd",
             "v1.0.1", "1.2.0", "1.10.0", "2.0.0"]


@pytest.fixture(scope="module")
def comparator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("version-order")
    header = link_library("espidf")["components/gen_link/version_order.h"]
    (folder / "version_order.h").write_bytes(header)
    (folder / "probe.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-std=gnu17", "-Wall", "-Wextra", "-Werror", f"-I{folder}", str(folder / "probe.c"),
                    "-o", str(folder / "probe")], check=True, capture_output=True)
    return folder / "probe"


def run_comparator(comparator, pairs) -> list[int | None]:
    text = "".join(f"{a}\n{b}\n" for a, b in pairs)
    out = subprocess.run([str(comparator)], input=text.encode(), capture_output=True, check=True).stdout.decode()
    return [None if word == "none" else int(word) for word in out.split()]


def test_semver_and_git_describe_versions_are_ordered_alike_by_the_firmware_and_gen(comparator):
    pairs = [(a, b) for a in ASCENDING for b in ASCENDING]
    expected = [(ASCENDING.index(a) > ASCENDING.index(b)) - (ASCENDING.index(a) < ASCENDING.index(b))
                for a, b in pairs]
    assert [version_order(a, b) for a, b in pairs] == expected
    assert run_comparator(comparator, pairs) == expected


def test_build_metadata_does_not_count(comparator):
    assert version_order("1.2.0+build.7", "1.2.0") == 0
    assert run_comparator(comparator, [("1.2.0+build.7", "1.2.0")]) == [0]


def test_what_is_not_major_minor_patch_cannot_be_ordered(comparator):
    unorderable = ["abc1234", "1.2", "1.2.0.1", "1.2.0_beta", "1.2.0-", "1.2.0-a..b", "1234567890.0.0", "V1.2.0"]
    pairs = [(version, "1.0.0") for version in unorderable]
    assert [version_order(a, b) for a, b in pairs] == [None] * len(pairs)
    assert run_comparator(comparator, pairs) == [None] * len(pairs)


versions = st.from_regex(r"\Av?[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}(-[0-9A-Za-z-]{1,4}(\.[0-9A-Za-z-]{1,4}){0,2})?"
                         r"(\+[0-9a-z]{1,3})?\Z", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(versions, versions), min_size=1, max_size=20))
def test_any_two_versions_are_ordered_alike_by_the_firmware_and_gen(comparator, pairs):
    assert run_comparator(comparator, pairs) == [version_order(a, b) for a, b in pairs]
