"""`gen build` of a spec with `ota:` (stand-in PlatformIO and esptool; the real espsecure): every app image is signed
with the project's key before anything is stored, so factory.bin, flash.json and the image `gen ota publish`
announces are the signed one; the ESP-IDF layout has two app slots and an erased otadata; an sdkconfig that
predates the OTA settings is refused."""

from __future__ import annotations

import json

from fake_tools.fixtures import fake_tools, gen_cli  # noqa: F401  (fixtures)
from fake_tools.out_layout import copy_example
from generator.pki.ota_signing import signature_problem, signing_key
from generator.pki.layout import PkiLayout
from generator.spec import load_spec


def test_gen_build_signs_the_app_image_every_artifact_is_made_of(tmp_path, fake_tools, gen_cli):
    spec_path = copy_example("espidf-ota", tmp_path / "project")
    code, _out, err = gen_cli("build", spec_path)
    assert code == 0, err
    spec = load_spec(spec_path)
    artifacts = spec.default_out_dir / "artifacts" / spec.devices[0].id
    assert signature_problem(artifacts / "firmware.bin", signing_key(PkiLayout(spec.pki.dir))) is None
    flash = json.loads((artifacts / "flash.json").read_text())
    assert flash["esptool_args"][-6:] == ["0x8000", "partitions.bin", "0xf000", "ota_data_initial.bin",
                                          "0x20000", "firmware.bin"]
    merged = next(call for call in fake_tools.calls("esptool") if "merge-bin" in call["argv"])["argv"]
    assert merged[merged.index("0x20000") + 1].endswith("firmware.signed.bin"), merged


def test_an_sdkconfig_made_before_ota_was_switched_on_is_refused_with_what_to_do(tmp_path, fake_tools, gen_cli):
    spec_path = copy_example("espidf-ota", tmp_path / "project")
    spec = load_spec(spec_path)
    firmware = spec.default_out_dir / "devices" / spec.devices[0].id / "firmware"
    firmware.mkdir(parents=True)
    (firmware / "sdkconfig.esp32-espidf").write_text("CONFIG_PARTITION_TABLE_CUSTOM=y\n"
                                                     "# CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE is not set\n")
    code, _out, err = gen_cli("build", spec_path)
    assert code == 2, err
    assert "contradicts it: CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y (it has n)" in err
    assert "delete " in err and fake_tools.pio_runs() == []
