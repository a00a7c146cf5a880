"""Every sdkconfig option gen writes into an ESP-IDF project's sdkconfig.defaults, as the real Kconfig at the pinned
tag declares it: where (path:line in espressif/esp-idf at IDF_TAG, or esp-mqtt at the commit IDF_TAG pins), and every
`depends on` that guards it (its own, its choice's, its menu's), verbatim. tests/test_firmware_security.py checks
that a generated sdkconfig.defaults names only these options and satisfies their dependencies; with a checkout of
esp-idf at hand it checks each line here against the Kconfig file itself.

The chip facts the dependencies read (SOC_* capabilities, from components/soc/<chip>/include/soc/
Kconfig.soc_caps.in) are recorded in SOC_FACTS the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

IDF_TAG = "v5.5.3"
ESP_MQTT_COMMIT = "6af4446a48ea7fa54948edc4e62277ed70abb6e1"   # components/mqtt/esp-mqtt at IDF_TAG


@dataclass(frozen=True)
class KconfigOption:
    name: str                       # without CONFIG_
    source: str                     # path:line of its `config NAME` line
    depends: tuple[str, ...] = ()   # every `depends on` expression that guards it, verbatim
    choice: str | None = None       # the choice it is a member of (one member of a choice is chosen)

    @property
    def path(self) -> str:
        return self.source.rsplit(":", 1)[0]

    @property
    def line(self) -> int:
        return int(self.source.rsplit(":", 1)[1])


_BOOTLOADER = "components/bootloader/Kconfig.projbuild"
_ROLLBACK = "components/bootloader/Kconfig.app_rollback"
_PARTITIONS = "components/partition_table/Kconfig.projbuild"
# choice SECURE_UART_ROM_DL_MODE (Kconfig.projbuild:1149-1154)
_ROM_DL_MODE_DEPENDS = ("SECURE_BOOT_V2_ENABLED || SECURE_FLASH_ENC_ENABLED",
                        "!(IDF_TARGET_ESP32 && ESP32_REV_MIN_FULL < 300)")

KCONFIG_OPTIONS: dict[str, KconfigOption] = {option.name: option for option in (
    # Every project (templates/espidf/sdkconfig.defaults.j2)
    KconfigOption("PARTITION_TABLE_CUSTOM", f"{_PARTITIONS}:61", choice="PARTITION_TABLE_TYPE"),
    KconfigOption("PARTITION_TABLE_CUSTOM_FILENAME", f"{_PARTITIONS}:129"),
    KconfigOption("ESPTOOLPY_FLASHSIZE_4MB", "components/esptool_py/Kconfig.projbuild:122",
                  choice="ESPTOOLPY_FLASHSIZE"),
    KconfigOption("ESP_MAIN_TASK_STACK_SIZE", "components/esp_system/Kconfig:225"),
    KconfigOption("LWIP_SNTP_MAX_SERVERS", "components/lwip/Kconfig:1127"),
    KconfigOption("MQTT_PROTOCOL_311", "components/mqtt/esp-mqtt/Kconfig:3"),
    KconfigOption("ESP_TLS_USING_MBEDTLS", "components/esp-tls/Kconfig:9", choice="ESP_TLS_LIBRARY_CHOOSE"),
    KconfigOption("MBEDTLS_HAVE_TIME", "components/mbedtls/Kconfig:655", depends=("!ESP_TIME_FUNCS_USE_NONE",)),
    KconfigOption("MBEDTLS_HAVE_TIME_DATE", "components/mbedtls/Kconfig:679", depends=("MBEDTLS_HAVE_TIME",)),
    # ota: (signed updates, rollback)
    KconfigOption("BOOTLOADER_APP_ROLLBACK_ENABLE", f"{_ROLLBACK}:3"),
    KconfigOption("SECURE_SIGNED_APPS_NO_SECURE_BOOT", f"{_BOOTLOADER}:497", depends=("!SECURE_BOOT",)),
    KconfigOption("SECURE_SIGNED_APPS_RSA_SCHEME", f"{_BOOTLOADER}:534", choice="SECURE_SIGNED_APPS_SCHEME",
                  depends=("SECURE_BOOT || SECURE_SIGNED_APPS_NO_SECURE_BOOT",
                           "SECURE_BOOT_V2_RSA_SUPPORTED && (SECURE_SIGNED_APPS_NO_SECURE_BOOT || "
                           "SECURE_BOOT_V2_ENABLED)",
                           "!(IDF_TARGET_ESP32C5 && ESP32C5_REV_MIN_FULL < 1)")),
    KconfigOption("SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT", f"{_BOOTLOADER}:592",
                  depends=("SECURE_SIGNED_APPS_NO_SECURE_BOOT",)),
    KconfigOption("SECURE_BOOT_BUILD_SIGNED_BINARIES", f"{_BOOTLOADER}:681", depends=("SECURE_SIGNED_APPS",)),
    KconfigOption("ESP32_REV_MIN_3", "components/esp_hw_support/port/esp32/Kconfig.hw_support:22",
                  choice="ESP32_REV_MIN", depends=("IDF_TARGET_ESP32",)),
    # security: (generator.firmware.security)
    KconfigOption("PARTITION_TABLE_OFFSET", f"{_PARTITIONS}:153"),
    KconfigOption("SECURE_FLASH_ENC_ENABLED", f"{_BOOTLOADER}:822"),
    KconfigOption("SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT", f"{_BOOTLOADER}:882",
                  choice="SECURE_FLASH_ENCRYPTION_MODE", depends=("SECURE_FLASH_ENC_ENABLED",)),
    KconfigOption("SECURE_FLASH_ENCRYPTION_MODE_RELEASE", f"{_BOOTLOADER}:886", choice="SECURE_FLASH_ENCRYPTION_MODE",
                  depends=("SECURE_FLASH_ENC_ENABLED", "!EFUSE_VIRTUAL || IDF_CI_BUILD")),
    KconfigOption("SECURE_BOOT", f"{_BOOTLOADER}:606",
                  depends=("SOC_SECURE_BOOT_SUPPORTED && !(IDF_TARGET_ESP32C3 && ESP32C3_REV_MIN_FULL < 3)",)),
    KconfigOption("SECURE_BOOT_V2_ENABLED", f"{_BOOTLOADER}:645", choice="SECURE_BOOT_VERSION",
                  depends=("SECURE_BOOT", "SECURE_BOOT_V2_RSA_SUPPORTED || SECURE_BOOT_V2_ECC_SUPPORTED")),
    KconfigOption("NVS_ENCRYPTION", "components/nvs_flash/Kconfig:3",
                  depends=("SECURE_FLASH_ENC_ENABLED || SOC_HMAC_SUPPORTED",)),
    KconfigOption("NVS_SEC_KEY_PROTECT_USING_FLASH_ENC", "components/nvs_sec_provider/Kconfig:14",
                  choice="NVS_SEC_KEY_PROTECTION_SCHEME", depends=("NVS_ENCRYPTION", "SECURE_FLASH_ENC_ENABLED")),
    # The HMAC scheme: the XTS keys are HMAC-SHA256 of fixed seeds with the eFuse key NVS_SEC_HMAC_EFUSE_KEY_ID
    # (nvs_sec_provider.c:113-136); its default -1 is an #error when the scheme is chosen (nvs_sec_provider.c:109).
    KconfigOption("NVS_SEC_KEY_PROTECT_USING_HMAC", "components/nvs_sec_provider/Kconfig:22",
                  choice="NVS_SEC_KEY_PROTECTION_SCHEME", depends=("NVS_ENCRYPTION", "SOC_HMAC_SUPPORTED")),
    KconfigOption("NVS_SEC_HMAC_EFUSE_KEY_ID", "components/nvs_sec_provider/Kconfig:32",
                  depends=("NVS_SEC_KEY_PROTECT_USING_HMAC",)),
    # security.rom_download_mode: the UART ROM download mode choice (the app burns its eFuse on startup)
    KconfigOption("SECURE_DISABLE_ROM_DL_MODE", f"{_BOOTLOADER}:1156", choice="SECURE_UART_ROM_DL_MODE",
                  depends=_ROM_DL_MODE_DEPENDS),
    KconfigOption("SECURE_ENABLE_SECURE_ROM_DL_MODE", f"{_BOOTLOADER}:1171", choice="SECURE_UART_ROM_DL_MODE",
                  depends=(*_ROM_DL_MODE_DEPENDS, "SOC_SUPPORTS_SECURE_DL_MODE")),
    KconfigOption("SECURE_INSECURE_ALLOW_DL_MODE", f"{_BOOTLOADER}:1198", choice="SECURE_UART_ROM_DL_MODE",
                  depends=_ROM_DL_MODE_DEPENDS),
    KconfigOption("BOOTLOADER_APP_ANTI_ROLLBACK", f"{_ROLLBACK}:15", depends=("BOOTLOADER_APP_ROLLBACK_ENABLE",)),
    KconfigOption("BOOTLOADER_APP_SECURE_VERSION", f"{_ROLLBACK}:22", depends=("BOOTLOADER_APP_ANTI_ROLLBACK",)),
)}

# Symbols the options above depend on that are not options gen writes: defined by Kconfig from others.
# name -> (source, expression that defines it as y)
DERIVED_SYMBOLS: dict[str, tuple[str, str]] = {
    "SECURE_BOOT_V2_RSA_SUPPORTED": (f"{_BOOTLOADER}:463",
                                     "(IDF_TARGET_ESP32 && ESP32_REV_MIN_FULL >= 300) || SOC_SECURE_BOOT_V2_RSA"),
    "SECURE_SIGNED_APPS": (f"{_BOOTLOADER}:454", "SECURE_SIGNED_ON_BOOT || SECURE_SIGNED_ON_UPDATE"),
    "SECURE_SIGNED_ON_BOOT": (f"{_BOOTLOADER}:444", "SECURE_BOOT || SECURE_SIGNED_ON_BOOT_NO_SECURE_BOOT"),
    "SECURE_SIGNED_ON_UPDATE": (f"{_BOOTLOADER}:449", "SECURE_BOOT || SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT"),
}

# The chip capabilities the dependencies read, y on each chip gen targets (absent: n), with their source.
SOC_FACTS: dict[str, dict[str, str]] = {
    "esp32": {"SOC_SECURE_BOOT_SUPPORTED": "components/soc/esp32/include/soc/Kconfig.soc_caps.in:130"},
    "esp32c3": {"SOC_SECURE_BOOT_SUPPORTED": "components/soc/esp32c3/include/soc/Kconfig.soc_caps.in:146",
                "SOC_HMAC_SUPPORTED": "components/soc/esp32c3/include/soc/Kconfig.soc_caps.in:134",
                "SOC_SUPPORTS_SECURE_DL_MODE": "components/soc/esp32c3/include/soc/Kconfig.soc_caps.in:66",
                "SOC_SECURE_BOOT_V2_RSA": "components/soc/esp32c3/include/soc/Kconfig.soc_caps.in:950"},
    "esp32s3": {"SOC_SECURE_BOOT_SUPPORTED": "components/soc/esp32s3/include/soc/Kconfig.soc_caps.in:202",
                "SOC_HMAC_SUPPORTED": "components/soc/esp32s3/include/soc/Kconfig.soc_caps.in:190",
                "SOC_SUPPORTS_SECURE_DL_MODE": "components/soc/esp32s3/include/soc/Kconfig.soc_caps.in:106",
                "SOC_SECURE_BOOT_V2_RSA": "components/soc/esp32s3/include/soc/Kconfig.soc_caps.in:1346"},
}
