"""Values from users reach C and C++ source intact: every string literal the generator writes carries its value
byte for byte, whatever it holds (quotes, backslashes, trigraphs, comment markers, newlines, UTF-8), and spec
values that cannot be carried are rejected by `gen check` with a reason. Proven by compiling the generated
headers into small programs that print the values in hex."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_fakes import credentials_for
from generator.core.c_literals import c_comment_text, c_string_literal, c_string_literal_lines
from generator.core.errors import UserError
from generator.firmware.render import CONFIG_DIR, render_firmware
from generator.firmware.flags import ARDUINO_ESP32, ESP_IDF
from generator.spec import load_spec

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

NASTY = ['"', "\\", "??/", "??=", "??'", "*/", "/*", "//", "\n", "\r", "\t", "é", "€", "😀", "\\x41", "\\0", "%s",
         "?", "'", "\x7f", "\x01", "${", "#", ":", " ", "-", "7"]
nasty_text = st.lists(st.sampled_from(NASTY) | st.text(min_size=1, max_size=3), min_size=1, max_size=8).map("".join)


def compile_and_run(tmp: Path, sources: dict[str, str], *, language: str = "c++") -> str:
    """Compiles {file name: text} (each its own translation unit) into one program, runs it, returns stdout."""
    compiler = ["g++", ARDUINO_ESP32.cxx[0]] if language == "c++" else ["gcc", ESP_IDF.c[0]]  # their standards
    paths = []
    for name, text in sources.items():
        (tmp / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp / name))
    binary = tmp / "probe"
    result = subprocess.run(compiler + ["-Wall", "-Wextra", "-Werror", "-trigraphs", f"-I{tmp}", *paths,
                                        "-o", str(binary)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True, timeout=30).stdout


PRINT_HEX = """
#include <stdio.h>
static void print_hex(const char* value, unsigned long length) {
    for (unsigned long i = 0; i < length; ++i) printf("%02x", (unsigned char)value[i]);
    printf("\\n");
}
"""
SUFFIX = {"c++": "cpp", "c": "c"}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.binary(max_size=40) | nasty_text.map(str.encode), min_size=1, max_size=12))
@pytest.mark.parametrize("language", ["c++", "c"])
def test_every_literal_carries_its_bytes_exactly_even_with_trigraphs_enabled(values, language, tmp_path):
    lines = [PRINT_HEX, "int main(void) {"]
    for index, value in enumerate(values):
        literal = c_string_literal_lines(value) if index % 2 else c_string_literal(value)
        lines.append(f"    static const char v{index}[] =\n{literal};")
        lines.append(f"    print_hex(v{index}, sizeof v{index} - 1);")
    lines.append("    return 0;\n}")
    printed = compile_and_run(tmp_path, {f"probe.{SUFFIX[language]}": "\n".join(lines)},
                              language=language).splitlines()
    assert printed == [value.hex() for value in values]


def test_comment_text_cannot_end_a_comment_or_continue_a_line():
    text = c_comment_text("evil */ name /* with \\\n??/ and é")
    assert "*/" not in text and "/*" not in text and "\\" not in text and "\n" not in text and "??" not in text
    assert text.isascii()


# --- Spec values end to end ------------------------------------------------------------------------------------

SPEC = {
    "project": "escaping",
    "target": "esp32-arduino",
    "broker": {"host": "mqtt.example.com"},
    "auth": "mtls+password",
}


def spec_for(tmp: Path, framework: str, *, device_id: str, ssid: str, password: str, topic_part: str,
             online: str) -> Path:
    data = dict(SPEC, target=f"esp32-{framework}", wifi={"ssid": ssid, "password": password},
                status={"topic": "devices/{id}/" + topic_part + "/status", "online": online},
                publish=[{"name": "telemetry", "topic": "devices/{id}/" + topic_part, "interval": 5}],
                subscribe=[{"name": "command", "filter": "devices/{id}/" + topic_part + "/cmd/#"}],
                device={"id": device_id})
    path = tmp / "device.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


CONFIG_HEADER, CREDENTIALS_HEADER = "gen_config.h", "gen_credentials.h"
# The spec's one publish and one subscribe entry, as gen_link reads their topics from gen_config.h's X-macro lists.
TOPIC_FIELDS = ("#define SOURCE_OF(name, source, ...) source",
                "static const char PUBLISH_TELEMETRY_TOPIC[] = GEN_LINK_PUBLISHES(SOURCE_OF);",
                "static const char SUBSCRIBE_COMMAND_FILTER[] = GEN_LINK_SUBSCRIBES(SOURCE_OF);")
FIELDS = ("DEVICE_ID", "WIFI_SSID", "WIFI_PASSWORD", "MQTT_PASSWORD", "STATUS_TOPIC", "STATUS_ONLINE",
          "PUBLISH_TELEMETRY_TOPIC", "SUBSCRIBE_COMMAND_FILTER")


BENIGN = {"device_id": "dev-01", "ssid": "plain-net", "password": "plain-passphrase", "topic_part": "t",
          "online": "online"}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases=st.lists(st.tuples(st.sampled_from(sorted(BENIGN)), nasty_text), min_size=4, max_size=4))
@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_spec_values_are_rejected_with_a_reason_or_reach_the_firmware_byte_exactly(framework, cases,
                                                                                  tmp_path_factory):
    tmp = tmp_path_factory.mktemp("escaping")
    accepted = []
    for index, (field, value) in enumerate(cases):
        folder = tmp / f"d{index}"
        folder.mkdir()
        if field == "password":
            value = (value * 8)[:63]  # a WPA2 passphrase has 8 to 63 characters; the content is what is tested
        spec_path = spec_for(folder, framework, **dict(BENIGN, **{field: value}))
        try:
            device = load_spec(spec_path, {}).devices[0]
        except UserError as error:
            assert str(error).strip(), "a rejected value must come with a reason"
            continue
        credentials = credentials_for(device)
        project = render_firmware(device, credentials, spec_name="device.yaml")
        for name in (CONFIG_HEADER, CREDENTIALS_HEADER):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(project.generated[f"{CONFIG_DIR[framework]}/{name}"])
        expected = [device.id, device.wifi.ssid, device.wifi.password, credentials.password, device.status.topic,
                    device.status.online, device.publish[0].topic, device.subscribe[0].filter]
        accepted.append((index, expected))
    if not accepted:
        return
    # One translation unit per device (the headers are meant to be included once per program).
    language = "c++" if framework == "arduino" else "c"
    sources = {}
    for index, _ in accepted:
        lines = ["#include <stddef.h>", "#include <stdint.h>", PRINT_HEX,
                 f'#include "d{index}/{CONFIG_HEADER}"', f'#include "d{index}/{CREDENTIALS_HEADER}"', *TOPIC_FIELDS,
                 f"void print_device_{index}(void) {{"]
        lines += [f"    print_hex({field}, sizeof {field} - 1);" for field in FIELDS]
        lines.append("}")
        sources[f"device_{index}.{SUFFIX[language]}"] = "\n".join(lines)
    main = [f"void print_device_{index}(void);" for index, _ in accepted]
    main += ["int main(void) {"] + [f"    print_device_{index}();" for index, _ in accepted] + ["    return 0;", "}"]
    sources[f"main.{SUFFIX[language]}"] = "\n".join(main)
    printed = compile_and_run(tmp, sources, language=language).splitlines()
    expected = [value.encode("utf-8").hex() for _, values in accepted for value in values]
    assert printed == expected


@pytest.mark.parametrize("framework", ["arduino", "espidf"])
def test_the_issues_hostile_wifi_password_compiles_and_arrives_byte_for_byte(framework, tmp_path):
    password = '"\\??/ */ /* // end\\'   # printable ASCII, as WPA2 requires (a newline is refused: test below)
    folder = tmp_path / "d0"
    folder.mkdir()
    spec_path = spec_for(folder, framework, device_id="door-01", ssid='caf\u00e9 "net" ??/', password=password,
                         topic_part="a??/b", online='on"line\\')
    device = load_spec(spec_path, {}).devices[0]
    credentials = credentials_for(device)
    project = render_firmware(device, credentials, spec_name="device.yaml")
    for name in (CONFIG_HEADER, CREDENTIALS_HEADER):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(project.generated[f"{CONFIG_DIR[framework]}/{name}"])
    language = "c++" if framework == "arduino" else "c"
    program = "\n".join(["#include <stddef.h>", "#include <stdint.h>", PRINT_HEX, f'#include "d0/{CONFIG_HEADER}"',
                         f'#include "d0/{CREDENTIALS_HEADER}"', *TOPIC_FIELDS, "int main(void) {"]
                        + [f"    print_hex({field}, sizeof {field} - 1);" for field in FIELDS] + ["    return 0;", "}"])
    printed = compile_and_run(tmp_path, {f"probe.{SUFFIX[language]}": program}, language=language).splitlines()
    expected = [device.id, device.wifi.ssid, password, credentials.password, device.status.topic,
                device.status.online, device.publish[0].topic, device.subscribe[0].filter]
    assert printed == [value.encode("utf-8").hex() for value in expected]
    assert device.wifi.password == password


def test_a_wifi_password_with_a_newline_is_refused_before_it_reaches_c(tmp_path):
    spec_path = spec_for(tmp_path, "arduino", device_id="door-01", ssid="net", password="a-good-\npassphrase",
                         topic_part="t", online="online")
    with pytest.raises(UserError, match="control characters"):
        load_spec(spec_path, {})
