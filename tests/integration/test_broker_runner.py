"""Running the real broker from generated files: it starts first try, really speaks TLS, reads its key after
dropping privileges, fails with its own words when something is wrong, reloads on SIGHUP; and the `gen broker`
commands."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (BROKER_NAME, EXAMPLES_DIR, WAIT_S, client_tls_context, find_free_port, mqtt_connect_over,
                      paho_connack, tls_connect)
from generator.broker import runner as mosquitto_runner
from generator.core.errors import ToolError
from generator.broker.runner import running_broker

EXAMPLES = sorted(path.name for path in EXAMPLES_DIR.iterdir() if (path / "device.yaml").is_file())


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_projects_broker_starts_first_try_and_says_it_is_running(example, example_project,
                                                                               start_broker):
    project = example_project(example)
    broker = start_broker(project.broker_dir)
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: mosquitto version 2\.\d+\.\d+ running$", broker.log_text(), re.MULTILINE)
    assert broker.log_text().count("mosquitto version") == 2   # "starting" and "running": one start, no retry
    assert "Error" not in broker.log_text() and "Warning" not in broker.log_text()


@pytest.mark.parametrize("auth", ["mtls", "password", "mtls+password"])
def test_the_listener_really_speaks_tls_with_the_generated_broker_certificate(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        assert sock.version() == "TLSv1.2"
        subject = dict(pair[0] for pair in sock.getpeercert()["subject"])
        assert subject["commonName"] == BROKER_NAME
    with tls_connect(broker, client_tls_context(project.client("sensor-a"), max_version=None)) as sock:
        assert sock.version() == "TLSv1.3"


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop happens only when mosquitto starts as root")
def test_started_as_root_the_broker_reads_its_key_as_user_mosquitto_with_the_readme_modes(broker_project,
                                                                                          start_broker):
    import grp
    import pwd

    project = broker_project("mtls+password")
    broker = start_broker(project.broker_dir)
    group = grp.getgrnam("mosquitto").gr_gid
    owner = {path.name: (path.stat().st_uid, path.stat().st_gid, stat.S_IMODE(path.stat().st_mode))
             for path in broker.private_dir.iterdir() if path.name != "mosquitto.log"}
    assert owner["broker.key"] == (0, group, 0o640) and owner["passwd"] == (0, group, 0o640)
    assert owner["acl"] == (0, group, 0o644)
    assert stat.S_IMODE(broker.private_dir.stat().st_mode) == 0o750
    with open(f"/proc/{broker.process.pid}/status") as status:
        uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
    assert uid == pwd.getpwnam("mosquitto").pw_uid
    assert paho_connack(broker, project.client("sensor-a")) == "Success"


def test_a_broker_key_that_does_not_match_its_cert_fails_with_the_brokers_own_error(broker_project, tmp_path):
    import shutil

    from generator.pki import profiles

    broken = tmp_path / "broker"
    shutil.copytree(broker_project("mtls").broker_dir, broken)
    (broken / "broker.key").write_bytes(profiles.private_key_pem(profiles.generate_key("ec-p256")))
    with pytest.raises(ToolError) as failed:
        with running_broker(broken, port=find_free_port(), bind_address="127.0.0.1"):
            pass
    assert "mosquitto did not start" in failed.value.message
    assert "key values mismatch" in failed.value.message or "Unable to load server key" in failed.value.message


def test_a_missing_mosquitto_is_a_tool_error_with_the_install_command(monkeypatch, broker_project):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(mosquitto_runner, "_SEARCH_DIRS", ())
    with pytest.raises(ToolError) as failed:
        with running_broker(broker_project("mtls").broker_dir):
            pass
    assert "apt-get install mosquitto" in str(failed.value)


def test_a_ctrl_c_just_after_the_broker_says_running_leaves_no_mosquitto_behind(monkeypatch, broker_project):
    started: list[subprocess.Popen] = []
    real_start, real_write = mosquitto_runner._start, mosquitto_runner.write_atomic

    def start(*args, **kwargs):
        started.append(real_start(*args, **kwargs)[0])
        return started[-1], "2"

    def write_interrupted(path, *args, **kwargs):
        if path.name == "mosquitto.pid":
            raise KeyboardInterrupt     # what Ctrl-C does when it lands between the start and the block
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(mosquitto_runner, "_start", start)
    monkeypatch.setattr(mosquitto_runner, "write_atomic", write_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with running_broker(broker_project("mtls").broker_dir, port=find_free_port(), bind_address="127.0.0.1"):
            pass
    assert len(started) == 1 and started[0].poll() is not None


def test_sighup_reloads_the_password_file_and_disconnects_a_client_whose_password_is_gone(broker_project,
                                                                                          copy_project,
                                                                                          start_broker):
    project = copy_project(broker_project("password"))
    broker = start_broker(project.broker_dir)
    passwd = project.broker_dir / "passwd"
    with tls_connect(broker, client_tls_context(project.client("sensor-b"))) as connected:
        assert mqtt_connect_over(connected, project.client("sensor-b")) == 0
        passwd.write_text("".join(line + "\n" for line in passwd.read_text().splitlines()
                                  if not line.startswith("sensor-b:")))
        broker.install(project.broker_dir)
        broker.reload()
        assert connected.recv(1) == b""   # the broker closed the session it no longer authorises
    assert paho_connack(broker, project.client("sensor-b")) == "Not authorized"
    assert paho_connack(broker, project.client("sensor-a")) == "Success"


def test_restart_comes_back_on_the_same_port(broker_project, start_broker):
    project = broker_project("mtls")
    broker = start_broker(project.broker_dir)
    port = broker.port
    broker.restart()
    assert broker.port == port and broker.process.poll() is None
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        assert mqtt_connect_over(sock, project.client("sensor-a")) == 0


def test_a_plaintext_listener_runs_only_because_the_spec_asked_and_still_needs_a_password(broker_project,
                                                                                          copy_project, free_port,
                                                                                          start_broker):
    from conftest import build_broker_project, mqtt_connack_code, mqtt_connect_packet

    project = copy_project(broker_project("password"))
    text = project.spec.path.read_text().replace("  port: 8883\n", "  port: 8883\n  plaintext_port: 1883\n")
    project.spec.path.write_text(text)
    project = build_broker_project(project.spec.path, project.out_dir)
    broker = start_broker(project.broker_dir, plaintext_port=free_port())
    client = project.client("sensor-a")
    with socket.create_connection((broker.host, broker.plaintext_port), timeout=WAIT_S) as sock:
        sock.send(mqtt_connect_packet("sensor-a", username="sensor-a", password=client.password))
        assert mqtt_connack_code(sock) == 0
    with socket.create_connection((broker.host, broker.plaintext_port), timeout=WAIT_S) as sock:
        sock.send(mqtt_connect_packet("anonymous"))
        assert mqtt_connack_code(sock) == 5


# ---------------------------------------------------------------------------------------------- the CLI


def gen(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True, text=True, **options)


def test_gen_broker_config_prints_the_conf_without_writing_anything(broker_project, tmp_path):
    spec = broker_project("mtls").spec
    result = gen("broker", "config", str(spec.path))
    assert result.returncode == 0, result.stderr
    assert "use_identity_as_username true" in result.stdout
    assert result.stdout.startswith("# Mosquitto 2.0 configuration")


def test_gen_broker_config_on_a_missing_spec_exits_2_without_a_traceback(tmp_path):
    result = gen("broker", "config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_gen_broker_up_runs_mosquitto_in_the_foreground_until_interrupted(broker_project, copy_project, free_port):
    project = copy_project(broker_project("mtls"))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(project.spec.path),
                                "--port", str(port), "--bind", "127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert f"running on 127.0.0.1, port {port} (TLS)" in line, line + process.stderr.read()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw:
            context = client_tls_context(project.client("sensor-a"))
            with context.wrap_socket(raw, server_hostname=BROKER_NAME) as sock:
                assert mqtt_connect_over(sock, project.client("sensor-a")) == 0
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 130, err          # stopped by Ctrl-C, after stopping mosquitto
    assert "mosquitto version" in err and "Traceback" not in err


def test_gen_broker_up_listens_on_this_machine_only_unless_told_otherwise(broker_project, copy_project, free_port):
    project = copy_project(broker_project("mtls"))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "generator", "broker", "up", str(project.spec.path),
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert f"running on 127.0.0.1, port {port} (TLS)" in line, line
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
        with pytest.raises(ConnectionRefusedError):   # another address of this machine: not listened on
            socket.create_connection(("127.0.0.2", port), timeout=WAIT_S).close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=WAIT_S)


DEBIAN_MAIN_CONF = "/etc/mosquitto/mosquitto.conf"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(DEBIAN_MAIN_CONF),
                    reason="needs root and Debian's /etc/mosquitto/mosquitto.conf")
def test_the_readme_install_works_under_debians_own_main_config(broker_project, free_port):
    # The README installs the files root:mosquitto (secrets 0640) and links the conf into conf.d/, next to
    # Debian's pid file, persistence and log file settings. Same here, in a temp root instead of /etc.
    import grp
    import pwd
    import shutil
    import tempfile

    from generator.broker.render import INSTALL_DIR
    from generator.broker.runner import ListenerPorts, find_dynsec_plugin, find_mosquitto, private_conf
    from generator.broker.sessions import end_sessions
    from generator.pki.credentials import ClientCredentials
    from generator.pki.spec_identities import open_spec_pki

    project = broker_project("mtls+password")
    group = grp.getgrnam("mosquitto").gr_gid
    root = Path(tempfile.mkdtemp(prefix="gen-debian-etc-"))   # /tmp/..., traversable by user mosquitto
    os.chmod(root, 0o755)
    install_dir, conf_d, var = root / "gen", root / "conf.d", root / "run"
    for directory in (install_dir, conf_d, var):
        directory.mkdir()
        os.chown(directory, 0, group)
        os.chmod(directory, 0o750)
    os.chown(var, pwd.getpwnam("mosquitto").pw_uid, group)   # like /run/mosquitto and /var/lib/mosquitto
    for source in project.broker_dir.iterdir():
        target = install_dir / source.name
        target.write_bytes(source.read_bytes())
        os.chown(target, 0, group)
        os.chmod(target, 0o640 if source.name in ("broker.key", "passwd") else 0o644)
    port = free_port()
    conf, _ = private_conf((install_dir / "mosquitto.conf").read_text(), private_dir=install_dir,
                           ports=ListenerPorts(port, None, "127.0.0.1"), run_as=None)
    # The README's two steps for the dynamic-security plugin: its file linked into the install directory, and an
    # empty state file where the broker's user may write (Debian's /var/lib/mosquitto; here `var`).
    plugin = find_dynsec_plugin()
    assert plugin is not None, "Debian's mosquitto ships mosquitto_dynamic_security.so"
    (install_dir / "dynamic-security.so").symlink_to(plugin)
    state = var / "gen-broker-test-dynsec.json"
    state.touch(mode=0o600)
    os.chown(state, pwd.getpwnam("mosquitto").pw_uid, group)
    conf = re.sub(r"(?m)^plugin .*$", f"plugin {install_dir / 'dynamic-security.so'}", conf)
    conf = re.sub(r"(?m)^plugin_opt_config_file .*$", f"plugin_opt_config_file {state}", conf)
    (conf_d / "gen-broker-test.conf").write_text(conf)
    main_conf = open(DEBIAN_MAIN_CONF).read()
    for option, value in (("pid_file", var / "mosquitto.pid"), ("persistence_location", f"{var}/"),
                          ("log_dest file", var / "mosquitto.log"), ("include_dir", conf_d)):
        main_conf = re.sub(rf"^{option} .*$", f"{option} {value}", main_conf, flags=re.MULTILINE)
    (root / "mosquitto.conf").write_text(main_conf)
    assert str(INSTALL_DIR) not in conf

    process = subprocess.Popen([str(find_mosquitto()), "-c", str(root / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = ""
        while "running" not in log:
            line = process.stderr.readline()
            assert line, f"mosquitto exited: {log}"
            log += line
        assert "Error" not in log and "Warning" not in log
        context = client_tls_context(project.client("sensor-a"))
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw:
            with context.wrap_socket(raw, server_hostname=BROKER_NAME) as sock:
                assert mqtt_connect_over(sock, project.client("sensor-a")) == 0
                # gen broker apply's way to end a session works on the installed broker too
                store = open_spec_pki(project.spec, create=False)
                admin = store.identity("client/gen.admin")
                end_sessions(["sensor-a"], host="127.0.0.1", port=port, broker_name=BROKER_NAME,
                             admin=ClientCredentials("gen.admin", project.client("sensor-a").ca_pem, admin.cert_pem,
                                                     admin.key_pem, store.password("gen.admin")))
                sock.settimeout(WAIT_S)
                assert sock.recv(1) == b""                  # the broker closed it
    finally:
        process.terminate()
        process.wait(timeout=WAIT_S)
        shutil.rmtree(root)
