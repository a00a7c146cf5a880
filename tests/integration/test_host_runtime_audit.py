"""templates/host/README.md's audit table is complete: every framework name the generated firmware uses (each
function, macro, type, constant and struct field declared by the host runtime's device headers and spelled in a
generated source) is listed there with its real header. The list comes from the generated sources, parsed by
libclang against the runtime's headers, not from a hand-kept list."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import clang.cindex as clang
import pytest

from firmware_fakes import EXAMPLES, example_devices, write_firmware_project
from generator.firmware.fingerprint import outside_includes
from generator.simulate.host_build import firmware_compile_flags
from generator.simulate.host_project import read_project
from generator.core.paths import HOST_RUNTIME_DIR

DEVICE_HEADERS = (HOST_RUNTIME_DIR / "arduino", HOST_RUNTIME_DIR / "idf")
README = HOST_RUNTIME_DIR / "README.md"


def _in_device_headers(cursor) -> bool:
    source = cursor.location.file
    return source is not None and any(Path(source.name).resolve().is_relative_to(d) for d in DEVICE_HEADERS)


def _in_mbedtls_headers(cursor) -> bool:
    """Declared by mbedTLS (the real library's headers, which both frameworks and the host runtime ship)."""
    source = cursor.location.file
    return source is not None and Path(source.name).parent.name == "mbedtls"


def _firmware_file(path: Path, source: Path, root: Path) -> bool:
    """The source itself, or a header of the project (gen_link's own headers hold code too: ota_common.h)."""
    return path == source or (path.suffix == ".h" and path.resolve().is_relative_to(Path(root).resolve()))


def framework_names(root: Path, framework: str, declared_in=_in_device_headers) -> dict[str, str]:
    """{name: source file} for every name of the runtime's device headers (or of the headers `declared_in`
    accepts) that a project source spells out."""
    project = read_project(root, framework)
    gcc_include = subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                                 check=True).stdout.strip()
    names: dict[str, str] = {}
    for source in [*project.sources, *outside_includes(project.sources, root)]:   # the app starter too
        language = "c" if source.suffix == ".c" else "c++"
        args = ["-x", language, "-isystem", gcc_include,
                *(flag for flag in firmware_compile_flags(project, language) if not flag.startswith(("-W", "-O", "-f", "-g")))]
        unit = clang.Index.create().parse(str(source), args=args,
                                          options=clang.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD)
        errors = [str(d) for d in unit.diagnostics if d.severity >= clang.Diagnostic.Error]
        assert not errors, errors
        spelled = {token.spelling for token in unit.cursor.get_tokens() if token.kind == clang.TokenKind.IDENTIFIER}
        declared: set[str] = set()

        def visit(cursor) -> None:
            for child in cursor.get_children():
                referenced = child.referenced
                if referenced is not None and declared_in(referenced):
                    declared.add(referenced.spelling)
                visit(child)

        for top in unit.cursor.get_children():
            if top.kind == clang.CursorKind.MACRO_DEFINITION:
                if declared_in(top):
                    declared.add(top.spelling)
            elif top.location.file is not None and _firmware_file(Path(top.location.file.name), source, root):
                if Path(top.location.file.name) != source:
                    spelled.update(token.spelling for token in top.get_tokens()
                                   if token.kind == clang.TokenKind.IDENTIFIER)
                referenced = top.referenced
                if referenced is not None and declared_in(referenced):
                    declared.add(referenced.spelling)
                visit(top)
        names.update(dict.fromkeys(spelled & declared, source.name))
    return names


def audit_rows() -> list[list[str]]:
    text = README.read_text()
    table = text[text.index("## Audit"):text.index("## Behaviour kept from the device")]
    return [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line]


def audited_names() -> set[str]:
    return {name for row in audit_rows() for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", row[0])}


def own_key(device):
    return replace(device, pki=replace(device.pki, key_origin="device"), secrets="nvs")


def write_project(root: Path, device) -> Path:
    return write_firmware_project(root, device)


@pytest.mark.parametrize("example, secrets", [
    ("arduino-mtls-password", "embed"), ("arduino-mtls-password", "nvs"),
    ("arduino-mtls-password", "nvs, key made on the device"),
    ("espidf-mtls-password", "embed"), ("espidf-mtls-password", "nvs"),
    ("espidf-mtls-password", "nvs, key made on the device"),
    ("arduino-ota", "embed"), ("espidf-ota", "embed"),      # the update handler and what it calls
    ("espidf-secure-ota", "nvs"),                            # with anti-rollback, NVS encryption, secure boot
])
def test_every_framework_name_the_firmware_uses_is_in_the_audit_table(example, secrets, tmp_path):
    device = replace(example_devices(example)[0], secrets=secrets.split(",")[0])
    if "device" in secrets:
        device = own_key(device)
    used = framework_names(write_project(tmp_path, device), device.framework)
    assert len(used) > 40, used   # the extraction sees the firmware's calls, not just a few names
    missing = {name: where for name, where in used.items() if name not in audited_names()}
    assert not missing, f"add these to the audit table of {README}: {missing}"


def test_every_framework_name_the_espidf_product_examples_app_uses_is_in_the_audit_table(tmp_path):
    """The app of projects/examples/greenhouse-product-espidf (its src/ and components/) calls ESP-IDF beyond what
    gen_link calls: the ADC's oneshot driver."""
    example = EXAMPLES / "greenhouse-product-espidf"
    for folder in ("src", "components"):
        shutil.copytree(example / folder, tmp_path / folder)
    device = example_devices(example.name)[0]
    used = framework_names(write_project(tmp_path, device), device.framework)
    assert {"adc_oneshot_new_unit", "adc_oneshot_read", "ADC_ATTEN_DB_12"} <= used.keys(), used
    missing = {name: where for name, where in used.items() if name not in audited_names()}
    assert not missing, f"add these to the audit table of {README}: {missing}"


def test_the_extraction_sees_names_used_only_inside_macro_arguments(tmp_path):
    device = example_devices("espidf-mtls")[0]
    used = framework_names(write_project(tmp_path, device), "espidf")
    assert {"esp_wifi_init", "esp_err_to_name", "IP2STR", "WIFI_MODE_STA", "ssid"} <= used.keys()


@pytest.mark.parametrize("example", ["arduino-mtls", "espidf-mtls"])
def test_every_mbedtls_name_of_a_device_that_makes_its_key_is_in_the_audit_table_at_both_versions(example,
                                                                                                 tmp_path):
    """device_key.c calls mbedTLS directly: each name it uses has a row with its line in mbedTLS 3.6.5 (ESP-IDF
    5.5.3) and 2.28.7 (ESP-IDF 4.4.7 under Arduino-ESP32 2.0.17), whose APIs differ (pk_parse_key's RNG)."""
    device = own_key(example_devices(example)[0])
    used = framework_names(write_project(tmp_path, device), device.framework, declared_in=_in_mbedtls_headers)
    assert {"mbedtls_pk_parse_key", "mbedtls_x509write_csr_pem", "mbedtls_ctr_drbg_seed"} <= used.keys(), used
    rows = {name: row for row in audit_rows() for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", row[0])}
    missing = sorted(name for name in used if name not in rows)
    assert not missing, f"add these mbedTLS names to the audit table of {README}: {missing}"
    for name in used:
        assert "v3.6.5" in rows[name][1] and "v2.28.7" in rows[name][1], (name, rows[name][1])


@pytest.mark.parametrize("example", ["arduino-ota", "espidf-ota"])
def test_every_mbedtls_name_of_a_device_that_updates_over_the_air_is_in_the_audit_table_at_both_versions(example,
                                                                                                        tmp_path):
    """The update handler calls mbedTLS directly (ota_common.h: an image's SHA-256 and a downgrade permission's
    RSA-PSS signature; Arduino's ota_update.cpp: the image signature): each name has a row at both versions."""
    device = example_devices(example)[0]
    used = framework_names(write_project(tmp_path, device), device.framework, declared_in=_in_mbedtls_headers)
    assert {"mbedtls_pk_parse_public_key", "mbedtls_pk_verify_ext", "mbedtls_base64_decode"} <= used.keys(), used
    rows = {name: row for row in audit_rows() for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", row[0])}
    missing = sorted(name for name in used if name not in rows)
    assert not missing, f"add these mbedTLS names to the audit table of {README}: {missing}"
    for name in used:
        assert "v3.6.5" in rows[name][1] and "v2.28.7" in rows[name][1], (name, rows[name][1])
