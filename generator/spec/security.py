"""The spec's `security:` section as one device sees it, and what a device's framework, chip and other settings
allow of it. Each refusal names the option and says why (the caller reports it at the option's line, exit 2)."""

from __future__ import annotations

from typing import Any, Callable

from generator.spec.model import Security

# Arduino-ESP32 2.0.17 links prebuilt ESP-IDF 4.4 libraries and a prebuilt bootloader (tools/sdk/<chip>/bin,
# tools/sdk/<chip>/sdkconfig: CONFIG_SECURE_FLASH_ENC_ENABLED, CONFIG_SECURE_BOOT and CONFIG_NVS_ENCRYPTION are not
# set); PlatformIO cannot rebuild them, so none of these protections can be switched on from an Arduino project.
ARDUINO_REFUSAL = ("Arduino-ESP32 2.0.17 links a prebuilt bootloader and prebuilt ESP-IDF libraries built without "
                   "{what} (their sdkconfig has {option} unset), and a PlatformIO Arduino project cannot rebuild them")
_ARDUINO_OPTIONS = {
    "flash_encryption": ("flash encryption", "CONFIG_SECURE_FLASH_ENC_ENABLED"),
    "secure_boot": ("secure boot", "CONFIG_SECURE_BOOT"),
    "nvs_encryption": ("NVS encryption", "CONFIG_NVS_ENCRYPTION"),
    "secure_version": ("app anti-rollback", "CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK"),
    "rom_download_mode": ("the UART ROM download mode choice", "CONFIG_SECURE_UART_ROM_DL_MODE"),
}
# The eFuse field the secure version is counted in (BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD's range at v5.5.3).
SECURE_VERSION_BITS = {"esp32": 32, "esp32c2": 4}
SECURE_VERSION_BITS_DEFAULT = 16
# Secure Boot V2 with RSA needs an ESP32 of revision 3 or later, every other chip gen targets has it.
SECURE_BOOT_CHIPS = ("esp32", "esp32s2", "esp32c3", "esp32s3", "esp32c6", "esp32h2")
# The chips with the HMAC peripheral (SOC_HMAC_SUPPORTED in components/soc/<chip>/include/soc/Kconfig.soc_caps.in
# at v5.5.3; generator.firmware.kconfig_audit.SOC_FACTS records the lines of gen's targets). On them the NVS
# encryption keys are derived from an HMAC key in eFuse (CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC), which needs no
# nvs_keys partition and no flash encryption; the plain ESP32 keeps them in nvs_keys, under flash encryption.
HMAC_CHIPS = ("esp32s2", "esp32s3", "esp32c3", "esp32c5", "esp32c6", "esp32h2", "esp32h21", "esp32p4")
# The chips with Secure Download Mode (SOC_SUPPORTS_SECURE_DL_MODE at v5.5.3; kconfig_audit.SOC_FACTS).
SECURE_DOWNLOAD_CHIPS = ("esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32c61", "esp32h2", "esp32p4", "esp32s2",
                         "esp32s3")

Problem = Callable[[tuple, str, str | None], None]


def _mode(value: Any) -> str:
    """A mode as the spec wrote it; YAML 1.1 reads a bare `off` as false."""
    return "off" if value is False else value


def secure_version_limit(chip: str) -> int:
    return SECURE_VERSION_BITS.get(chip, SECURE_VERSION_BITS_DEFAULT)


def nvs_key_protection(raw: dict, chip: str) -> str | None:
    """What protects the NVS encryption keys: as the spec writes it, else the HMAC peripheral where the chip has
    one, else flash encryption; None without NVS encryption."""
    if not raw.get("nvs_encryption"):
        return None
    return raw.get("nvs_key_protection") or ("hmac" if chip in HMAC_CHIPS else "flash_encryption")


def _refuse_nvs_key_protection(raw: dict, security: Security, chip: str,
                               refuse: Callable[[str, str, str], None]) -> None:
    """What the Kconfig of v5.5.3 does not allow of security.nvs_key_protection (components/nvs_sec_provider/Kconfig:
    USING_HMAC depends on SOC_HMAC_SUPPORTED, USING_FLASH_ENC on SECURE_FLASH_ENC_ENABLED)."""
    if "nvs_key_protection" in raw and not security.nvs_encryption:
        refuse("nvs_key_protection", "it chooses what protects the NVS encryption keys, "
               "but nvs_encryption is off", "add nvs_encryption: true, or remove nvs_key_protection")
    elif security.nvs_key_protection == "hmac" and chip not in HMAC_CHIPS:
        refuse("nvs_key_protection", f"hmac needs the HMAC peripheral, which {chip} "
               "does not have (CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC depends on SOC_HMAC_SUPPORTED)",
               "use nvs_key_protection: flash_encryption (the keys in an nvs_keys partition), or a chip with HMAC "
               f"({', '.join(HMAC_CHIPS)})")
    elif security.nvs_keys_partition and not security.encrypts_flash:
        key = "nvs_key_protection" if "nvs_key_protection" in raw else "nvs_encryption"
        refuse(key, "security.nvs_encryption keeps its XTS-AES keys in the nvs_keys partition, which only "
               "flash encryption protects; with flash_encryption: off anyone could read them",
               "set flash_encryption: development (or release)" + (
                   ", or nvs_key_protection: hmac (this chip has the HMAC peripheral)" if chip in HMAC_CHIPS else ""))


def _refuse_rom_download_mode(security: Security, chip: str, refuse: Callable[[str, str, str], None]) -> None:
    """components/bootloader/Kconfig.projbuild:1149-1204 at v5.5.3: the choice depends on secure boot or flash
    encryption, its secure member on SOC_SUPPORTS_SECURE_DL_MODE."""
    mode = security.rom_download_mode
    if mode is None:
        return
    if not security.encrypts_flash and security.secure_boot == "off":
        refuse("rom_download_mode", "ESP-IDF sets the UART ROM download mode only with secure boot or flash "
               "encryption (CONFIG_SECURE_UART_ROM_DL_MODE depends on SECURE_BOOT_V2_ENABLED || "
               "SECURE_FLASH_ENC_ENABLED)", "turn on flash_encryption or secure_boot, or remove rom_download_mode")
    elif mode == "secure" and chip not in SECURE_DOWNLOAD_CHIPS:
        refuse("rom_download_mode", f"{chip} has no Secure Download Mode (SOC_SUPPORTS_SECURE_DL_MODE)",
               "use rom_download_mode: disabled (permanently) or enabled")


def resolve_security(raw: Any, *, framework: str, chip: str, secrets: str, has_ota: bool,
                     problem: Problem, reported: set[str]) -> Security | None:
    """The Security of one device, or None without `security:`. `reported` keeps a problem of the shared section
    from being reported once per device."""
    if raw is None:
        return None
    raw = raw or {}
    defaults = Security()
    security = Security(
        flash_encryption=_mode(raw.get("flash_encryption", defaults.flash_encryption)),
        secure_boot=_mode(raw.get("secure_boot", defaults.secure_boot)),
        nvs_encryption=raw.get("nvs_encryption", defaults.nvs_encryption),
        secure_version=raw.get("secure_version"),
        nvs_key_protection=nvs_key_protection(raw, chip),
        rom_download_mode=raw.get("rom_download_mode"),
    )

    def refuse(key: str, message: str, hint: str) -> None:
        if message not in reported:
            reported.add(message)
            problem(("security", key) if key in raw else ("security",), message, hint)

    if framework == "arduino":
        asked = {"flash_encryption": security.flash_encryption != "off", "secure_boot": security.secure_boot != "off",
                 "nvs_encryption": security.nvs_encryption or "nvs_key_protection" in raw,
                 "secure_version": security.secure_version is not None,
                 "rom_download_mode": security.rom_download_mode is not None}
        for key, on in asked.items():
            if on:
                what, option = _ARDUINO_OPTIONS[key]
                refuse(key, f"security.{key}: " + ARDUINO_REFUSAL.format(what=what, option=option),
                       "use an ESP-IDF target (framework espidf) for this device, or set it off")
        return security
    if security.nvs_encryption and secrets != "nvs":
        refuse("nvs_encryption", "security.nvs_encryption encrypts the NVS partition, but with secrets: embed the "
               "secrets are in the app image, not in NVS", "use secrets: nvs (or flash_encryption, which encrypts "
               "the app image too)")
    _refuse_nvs_key_protection(raw, security, chip, refuse)
    _refuse_rom_download_mode(security, chip, refuse)
    if security.secure_boot == "v2" and chip not in SECURE_BOOT_CHIPS:
        refuse("secure_boot", f"security.secure_boot: v2 is not available on {chip}", "set secure_boot: off")
    if security.secure_version is not None:
        if not has_ota:
            refuse("secure_version", "security.secure_version is the app anti-rollback of updates over the air; "
                   "this spec has no ota:", "add ota:, or remove secure_version")
        limit = secure_version_limit(chip)
        if security.secure_version > limit:
            refuse("secure_version", f"security.secure_version {security.secure_version} is more than {chip}'s "
                   f"eFuse field holds ({limit} bits)", f"use at most {limit}")
    return security
