"""What the broker renderer writes: the config per auth mode, the `$7$` password file (checked against
mosquitto_passwd), the ACL and the file modes. Pure rendering; the real broker is in the other test_broker_* files."""

from __future__ import annotations

import dataclasses

import pytest

from generator.broker.render import (INSTALL_DIR, PASSWORD_ITERATIONS, acl_sections, password_matches,
                                     render_broker, render_mosquitto_conf, render_password_file)
from generator.core.topics import common_topic_prefix


def conf_lines(spec) -> list[str]:
    return [line for line in render_mosquitto_conf(spec).decode().splitlines() if line and not line.startswith("#")]


def listener_blocks(spec) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in conf_lines(spec):
        if line.startswith("listener "):
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
    return blocks


# ---------------------------------------------------------------------------------------------- mosquitto.conf


@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_no_anonymous_clients_an_acl_on_every_listener_and_tls_1_2_minimum_in_every_mode(auth, broker_project):
    lines = conf_lines(broker_project(auth).spec)
    assert lines[0] == "per_listener_settings true"   # before any security option, as Mosquitto requires
    for block in listener_blocks(broker_project(auth).spec):
        assert "allow_anonymous false" in block and f"acl_file {INSTALL_DIR}/acl" in block
    assert "tls_version tlsv1.2" in lines


@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_the_tls_listener_always_has_both_certfile_and_keyfile(auth, broker_project):
    # With certfile alone Mosquitto silently serves plaintext.
    (tls,) = listener_blocks(broker_project(auth).spec)
    assert tls[0] == "listener 8883"
    assert f"certfile {INSTALL_DIR}/broker.pem" in tls and f"keyfile {INSTALL_DIR}/broker.key" in tls


def test_mtls_takes_the_username_from_the_certificate_and_has_no_password_file(broker_project):
    lines = conf_lines(broker_project("mtls").spec)
    assert {"require_certificate true", "use_identity_as_username true", f"cafile {INSTALL_DIR}/ca.pem",
            f"crlfile {INSTALL_DIR}/crl.pem"} <= set(lines)
    assert not any(line.startswith("password_file") for line in lines)


def test_mtls_password_requires_a_certificate_and_takes_the_username_from_the_login(broker_project):
    lines = conf_lines(broker_project("mtls+password").spec)
    assert {"require_certificate true", f"password_file {INSTALL_DIR}/passwd", f"cafile {INSTALL_DIR}/ca.pem",
            f"crlfile {INSTALL_DIR}/crl.pem"} <= set(lines)
    assert "use_identity_as_username true" not in lines


def test_password_mode_uses_the_password_file_and_asks_for_no_client_certificate(broker_project):
    lines = conf_lines(broker_project("password").spec)
    assert {"require_certificate false", f"password_file {INSTALL_DIR}/passwd"} <= set(lines)
    assert not any(line.startswith(("cafile", "crlfile", "use_identity_as_username")) for line in lines)


def test_a_plaintext_listener_exists_only_when_the_spec_sets_plaintext_port(broker_project):
    spec = broker_project("password").spec
    assert len(listener_blocks(spec)) == 1
    with_plaintext = dataclasses.replace(spec, broker=dataclasses.replace(spec.broker, plaintext_port=1883))
    tls, plaintext = listener_blocks(with_plaintext)
    assert plaintext[0] == "listener 1883" and not any(line.startswith(("certfile", "keyfile")) for line in plaintext)


@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_every_listener_binds_the_client_id_to_the_user_and_caps_its_connections(auth, broker_project):
    spec = broker_project(auth).spec
    with_plaintext = dataclasses.replace(spec, broker=dataclasses.replace(spec.broker, plaintext_port=1883))
    for block in listener_blocks(with_plaintext):
        assert "use_username_as_clientid true" in block
        assert f"max_connections {2 * len(spec.devices) + 64}" in block


# ---------------------------------------------------------------------------------------------- password file


def test_the_password_file_has_one_7_line_per_user_and_no_plaintext(broker_project):
    project = broker_project("password")
    passwords = project.credentials.broker.passwords
    text = render_broker(project.spec, project.credentials.broker).files["passwd"].decode()
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["backend", "gen.admin", "gen.doctor", "sensor-a", "sensor-b"]
    for (username, password), line in zip(sorted(passwords), lines):
        encoded = line.split(":", 1)[1]
        assert encoded.startswith(f"$7${PASSWORD_ITERATIONS}$")
        assert password_matches(password, encoded)
        assert password not in text


def test_the_password_file_is_the_same_on_every_run_but_salted_per_user_and_installation(broker_project):
    credentials = broker_project("password").credentials.broker
    same_password = [("alpha", "same"), ("beta", "same")]
    first = render_password_file(same_password, salt_key=credentials.key_pem)
    assert first == render_password_file(same_password, salt_key=credentials.key_pem)
    alpha, beta = (line.split("$")[3] for line in first.decode().splitlines())
    assert alpha != beta
    assert first != render_password_file(same_password, salt_key=b"another installation's key")


def test_the_broker_key_and_password_file_are_0600_everything_else_0644(broker_project):
    project = broker_project("mtls+password")
    rendered = render_broker(project.spec, project.credentials.broker)
    assert set(rendered.files) == {"mosquitto.conf", "ca.pem", "broker.pem", "broker.key", "crl.pem", "passwd",
                                   "acl", "README.md"}
    assert {name for name, mode in rendered.modes.items() if mode == 0o600} == {"broker.key", "passwd"}
    assert {mode for name, mode in rendered.modes.items() if name not in ("broker.key", "passwd")} == {0o644}


def test_mtls_writes_no_password_file_and_password_mode_no_ca_or_crl(broker_project):
    mtls = render_broker(broker_project("mtls").spec, broker_project("mtls").credentials.broker).files
    password = render_broker(broker_project("password").spec, broker_project("password").credentials.broker).files
    assert "passwd" not in mtls and {"ca.pem", "crl.pem"} <= set(mtls)
    assert "passwd" in password and not {"ca.pem", "crl.pem"} & set(password)


# ---------------------------------------------------------------------------------------------- ACL


def test_each_device_may_write_its_topics_and_read_its_filters_and_the_backend_and_doctor_all_device_topics(broker_project):
    sections = {s.username: [(r.access, r.topic) for r in s.rules] for s in acl_sections(broker_project("mtls").spec)}
    assert sections == {
        "sensor-a": [("write", "devices/sensor-a/telemetry"), ("readwrite", "devices/sensor-a/status"),
                     ("read", "devices/sensor-a/cmd/#")],
        "sensor-b": [("write", "devices/sensor-b/telemetry"), ("readwrite", "devices/sensor-b/status"),
                     ("read", "devices/sensor-b/cmd/#")],
        "backend": [("readwrite", "devices/#")],
        "gen.doctor": [("readwrite", "devices/#")],
        "gen.admin": [("write", "$CONTROL/dynamic-security/v1"), ("read", "$CONTROL/dynamic-security/v1/response")],
    }


def test_the_acl_file_has_no_pattern_lines_no_tabs_and_no_indented_comments(broker_project):
    text = render_broker(broker_project("mtls").spec, broker_project("mtls").credentials.broker).files["acl"].decode()
    for line in text.splitlines():
        assert "\t" not in line and not line.startswith((" ", "pattern"))
        assert line == "" or line.startswith(("#", "user ", "topic read ", "topic write ", "topic readwrite "))
    assert text.index("user sensor-a") < text.index("topic write devices/sensor-a/telemetry")


def test_without_a_shared_prefix_the_backend_gets_each_first_levels_prefix_or_the_lone_topic(broker_project):
    spec = broker_project("mtls").spec
    a, b = spec.devices
    b = dataclasses.replace(b, status=dataclasses.replace(b.status, topic="other/sensor-b/status"))
    (backend,) = [s for s in acl_sections(dataclasses.replace(spec, devices=(a, b))) if s.username == "backend"]
    assert [(r.access, r.topic) for r in backend.rules] == [("readwrite", "devices/#"),
                                                            ("readwrite", "other/sensor-b/status")]


@pytest.mark.parametrize("topics, prefix", [
    (["a/b/c", "a/b/d/#"], "a/b"),
    (["a/x", "b/x"], None),
    (["+/x", "+/y"], None),
    (["fleet/s1/t", "fleet/s2/t"], "fleet"),
    (["/leading/slash", "/leading/other"], None),
])
def test_common_topic_prefix_stops_at_the_first_differing_or_wildcard_level(topics, prefix):
    assert common_topic_prefix(topics) == prefix


@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_the_operator_readme_installs_every_generated_file_with_the_right_mode(auth, broker_project):
    project = broker_project(auth)
    rendered = render_broker(project.spec, project.credentials.broker)
    readme = rendered.files["README.md"].decode()
    installed: dict[str, int] = {}
    for line in readme.splitlines():
        if line.startswith("sudo install -o root -g mosquitto -m") and line.endswith(f" {INSTALL_DIR}/") \
                and "build/broker" not in line:
            words = line.split()
            for name in words[8:-1]:
                installed[name] = int(words[7], 8)
    assert set(installed) == set(rendered.files) - {"README.md"}
    for name, mode in installed.items():
        assert mode == (0o640 if rendered.modes[name] == 0o600 else 0o644), name


def test_the_operator_readme_says_how_to_end_a_revoked_devices_live_session(broker_project):
    readme = render_broker(broker_project("mtls").spec, broker_project("mtls").credentials.broker).files["README.md"]
    text = readme.decode()
    assert ('sudo "$(command -v gen)" broker apply SPEC --broker-dir /etc/mosquitto/gen '
            "--reload-command 'systemctl reload mosquitto'") in text
    assert "re-checks no live TLS session" in " ".join(text.split())
    assert "keeps its TLS session, but the reloaded ACL" not in text     # the old, wrong advice
    assert "/mosquitto_dynamic_security.so)\" /etc/mosquitto/gen/dynamic-security.so" in text
