"""The spec language: every mistake is caught by `gen check` with exit 2, file:line and a reason, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generator.cli import main

CASES = Path(__file__).parent.parent / "spec_cases"
EXAMPLES = Path(__file__).parent.parent.parent / "projects" / "examples"
INVALID = sorted(p for p in (CASES / "invalid").glob("*.yaml") if p.name != "secrets.yaml")


def run_gen(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def expectation(spec: Path) -> tuple[int, str]:
    expect_file = spec.with_suffix(".expect")
    if expect_file.exists():
        line, fragment = expect_file.read_text().splitlines()[:2]
        return int(line), fragment
    header = spec.read_text().splitlines()
    line = int(header[0].removeprefix("# expect-line: "))
    fragment = header[1].removeprefix("# expect: ")
    return line, fragment


def test_the_corpus_has_at_least_thirty_invalid_specs():
    assert len(INVALID) >= 30


@pytest.mark.parametrize("spec", INVALID, ids=[p.stem for p in INVALID])
def test_an_invalid_spec_exits_2_naming_the_line_and_the_reason(spec: Path, capsys, monkeypatch):
    monkeypatch.delenv("GEN_CORPUS_UNSET_VAR", raising=False)
    code, out, err = run_gen(["check", str(spec)], capsys)
    line, fragment = expectation(spec)
    assert code == 2, err
    assert "Traceback" not in out + err
    assert re.search(rf"{re.escape(str(spec))}:{line}:\d+", err), err
    assert fragment in " ".join(err.split()), err


def test_a_spec_whose_secrets_file_is_missing_says_which_file_to_create(capsys):
    spec = CASES / "no_secrets_file" / "device.yaml"
    code, _, err = run_gen(["check", str(spec)], capsys)
    assert code == 2
    assert f"{spec}:3:" in err
    assert "secrets.yaml does not exist" in err


def test_a_missing_spec_file_is_a_user_error(capsys, tmp_path):
    code, _, err = run_gen(["check", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "does not exist" in err


def test_every_problem_of_a_spec_is_reported_at_once(tmp_path, capsys):
    spec = tmp_path / "device.yaml"
    spec.write_text(
        "project: multi\nbroker:\n  host: mqtt.example.com\n  prot: 1\nwifi: {ssid: x, password: 'abcdefgh'}\n"
        "device:\n  id: a+b\n"
    )
    code, _, err = run_gen(["check", str(spec)], capsys)
    assert code == 2
    assert "(1 problem)" in err and "did you mean 'port'" in err
    spec.write_text(spec.read_text().replace("  prot: 1\n", "").replace("project: multi", "project: multi\nauth: pasword"))
    code, _, err = run_gen(["check", str(spec)], capsys)
    assert "did you mean 'password'" in err


def test_a_fleet_with_distinct_topics_and_overrides_is_valid(tmp_path, capsys):
    spec = tmp_path / "device.yaml"
    spec.write_text(
        "project: fleet\nwifi: {ssid: x, password: 'abcdefgh'}\nbroker: {host: 10.0.0.2}\n"
        "publish: [{name: t, topic: 'f/{id}/t', interval: 5}]\n"
        "devices:\n  - id: a\n  - id: b\n    target: esp32s3-espidf\n    wifi: {password: 'other-pass'}\n"
        "    publish: [{name: t, topic: 'f/{id}/t', qos: 2}]\n"
    )
    code, out, err = run_gen(["check", str(spec)], capsys)
    assert code == 0, err
    assert "topic: f/b/t" in out and "qos: 2" in out and "target: esp32s3-espidf" in out


def test_the_topic_index_agrees_with_filter_matching():
    from hypothesis import given, settings, strategies as st

    from generator.core.topics import TopicIndex, filter_matches

    level = st.sampled_from(["a", "b", "$SYS", "", "c"])
    topic = st.lists(level, min_size=1, max_size=4).map("/".join)
    filter_level = st.sampled_from(["a", "b", "+", "$SYS", "", "c"])
    topic_filter = st.tuples(st.lists(filter_level, min_size=1, max_size=4), st.booleans()).map(
        lambda parts: "/".join(parts[0] + (["#"] if parts[1] else [])))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(topic, max_size=8, unique=True), topic_filter)
    def agree(topics, a_filter):
        index = TopicIndex()
        for name in topics:
            index.add(name, "owner")
        found = {name for name, _ in index.matching(a_filter)}
        assert found == {name for name in topics if filter_matches(a_filter, name)}

    agree()


def test_a_fleet_of_two_thousand_devices_is_checked_without_comparing_every_pair(tmp_path, monkeypatch):
    """Fleet isolation looks filters up in a topic index: the work grows with the fleet, not with its square
    (4,000,000 filter/topic pairs here), and the one device that reads another's topic is still found."""
    from generator.core import topics
    from generator.spec import device_rules, resolve
    from generator.spec.source import read_spec_source

    compared, yielded = [], []
    real_matches, real_matching = device_rules.filter_matches, topics.TopicIndex.matching
    monkeypatch.setattr(device_rules, "filter_matches", lambda f, t: compared.append(1) or real_matches(f, t))
    monkeypatch.setattr(topics.TopicIndex, "matching",
                        lambda self, f: (yielded.append(1) or found for found in real_matching(self, f)))
    ids = "\n".join(f"  - id: dev-{i:04d}" for i in range(2000))
    spec = tmp_path / "device.yaml"
    spec.write_text("project: big\nwifi: {ssid: x, password: 'abcdefgh'}\nbroker: {host: mqtt.example.com}\n"
                    "publish: [{name: t, topic: 'f/{id}/t'}]\nsubscribe: [{name: c, filter: 'f/{id}/c/#'}]\n"
                    f"devices:\n{ids}\n  - id: nosy\n    subscribe: [{{name: c, filter: 'f/dev-0000/#'}}]\n")
    spec_data, problems = resolve.resolve_spec(read_spec_source(spec))
    assert spec_data is None
    assert [p.path for p in problems] == [("devices", 2000)], [p.message for p in problems]
    assert "'f/dev-0000/#', which would read 'dev-0000''s topic" in problems[0].message
    assert len(compared) < 10 * 2001 and len(yielded) < 10 * 2001, (len(compared), len(yielded))


def test_an_espidf_device_takes_more_ntp_servers_than_arduino_and_uses_them_all(tmp_path, capsys):
    spec = tmp_path / "device.yaml"
    text = (CASES / "invalid" / "too_many_ntp.yaml").read_text().replace("esp32-arduino", "esp32-espidf")
    spec.write_text("\n".join(line for line in text.splitlines() if not line.startswith("# expect")) + "\n")
    code, out, err = run_gen(["check", str(spec)], capsys)
    assert code == 0, err
    assert "d.org" in out
