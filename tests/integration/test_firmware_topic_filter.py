"""The firmware's C topic-filter matcher (gen_link's topic_filter.h) agrees with the generator's own MQTT 3.1.1 rules
(generator.topics.filter_matches) on every filter/topic pair hypothesis finds."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_fakes import credentials_for, example_devices
from generator.firmware.render import render_firmware
from generator.core.topics import filter_matches, topic_filter_problem

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

level = st.sampled_from(["a", "b", "", "$SYS", "dev-01", "é"])
topics = st.lists(level, min_size=1, max_size=4).map("/".join).filter(lambda t: t != "")
# Valid filters; those starting with "$SYS" too (a device never subscribes to them, but the matcher must not
# let a wildcard match them).
# Built valid by construction ('+' anywhere, '#' only last), so hypothesis rarely has to discard one.
filters = st.tuples(st.lists(level | st.just("+"), max_size=4), st.booleans()).map(
    lambda parts: "/".join(parts[0] + (["#"] if parts[1] else []))).filter(lambda f: f != "")

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "topic_filter.h"
int main(void) {
    char filter[256], topic[256];
    while (fgets(filter, sizeof filter, stdin) && fgets(topic, sizeof topic, stdin)) {
        filter[strcspn(filter, "\n")] = '\0';
        topic[strcspn(topic, "\n")] = '\0';
        printf("%d\n", topic_filter_matches(filter, topic) ? 1 : 0);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def matcher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matcher")
    device = example_devices("espidf-mtls")[0]
    header = render_firmware(device, credentials_for(device)).generated["components/gen_link/topic_filter.h"]
    (folder / "topic_filter.h").write_bytes(header)
    (folder / "probe.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-std=gnu17", "-Wall", "-Wextra", "-Werror", f"-I{folder}", str(folder / "probe.c"),
                    "-o", str(folder / "probe")], check=True, capture_output=True)
    return folder / "probe"


def run_matcher(matcher, pairs):
    text = "".join(f"{f}\n{t}\n" for f, t in pairs)
    out = subprocess.run([str(matcher)], input=text.encode(), capture_output=True, check=True).stdout.decode()
    return [line == "1" for line in out.split()]


def test_the_matcher_handles_the_mqtt_specification_examples(matcher):
    cases = {("sport/tennis/player1/#", "sport/tennis/player1"): True,
             ("sport/tennis/player1/#", "sport/tennis/player1/ranking"): True,
             ("sport/#", "sport"): True, ("#", "a/b"): True, ("+", "a/b"): False, ("+/+", "/finance"): True,
             ("/+", "/finance"): True, ("+", "/finance"): False, ("sport/+", "sport/"): True,
             ("sport/+", "sport"): False, ("#", "$SYS/x"): False, ("+/x", "$SYS/x"): False,
             ("$SYS/#", "$SYS/x"): True, ("a/b", "a/bc"): False, ("a/bc", "a/b"): False}
    assert run_matcher(matcher, list(cases)) == list(cases.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(filters, topics), min_size=20, max_size=60))
def test_the_c_matcher_agrees_with_the_generators_rules(matcher, pairs):
    assert all(topic_filter_problem(f.replace("$", "")) is None for f, _ in pairs)  # the strategy's promise
    assert run_matcher(matcher, pairs) == [filter_matches(f, t) for f, t in pairs]
