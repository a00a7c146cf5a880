/* sdkconfig.h for the host runtime: the handful of options our headers and typical firmware read.
 * The host build (generator/host_build.py) also turns the project's sdkconfig.defaults into -D flags,
 * which take precedence over these defaults. */
#pragma once

#ifndef CONFIG_IDF_TARGET                 /* the host build passes the target's, as PlatformIO's board does */
#define CONFIG_IDF_TARGET "esp32"
#define CONFIG_IDF_TARGET_ESP32 1
#endif
#ifndef CONFIG_IDF_FIRMWARE_CHIP_ID       /* esp_chip_id_t of the target (components/esp_system Kconfig) */
#define CONFIG_IDF_FIRMWARE_CHIP_ID 0x0000
#endif
#ifndef CONFIG_FREERTOS_HZ
#ifdef ARDUINO
#define CONFIG_FREERTOS_HZ 1000
#else
#define CONFIG_FREERTOS_HZ 100
#endif
#endif
#ifndef CONFIG_LOG_DEFAULT_LEVEL
#define CONFIG_LOG_DEFAULT_LEVEL 3
#endif
#ifndef CONFIG_LOG_MAXIMUM_LEVEL
#define CONFIG_LOG_MAXIMUM_LEVEL CONFIG_LOG_DEFAULT_LEVEL
#endif
#ifndef CONFIG_ESP_MAIN_TASK_STACK_SIZE
#define CONFIG_ESP_MAIN_TASK_STACK_SIZE 3584
#endif
#ifndef CONFIG_LWIP_SNTP_MAX_SERVERS
#ifdef ARDUINO
#define CONFIG_LWIP_SNTP_MAX_SERVERS 3   /* Arduino-ESP32 2.0.17's prebuilt sdkconfig */
#else
#define CONFIG_LWIP_SNTP_MAX_SERVERS 1   /* components/lwip/Kconfig default */
#endif
#endif
#ifndef CONFIG_MQTT_PROTOCOL_311
#define CONFIG_MQTT_PROTOCOL_311 1
#endif
#ifndef CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
/* no bundle: esp_crt_bundle_attach is not provided */
#endif
#ifdef ARDUINO
/* Arduino-ESP32 2.0.17's prebuilt sdkconfig enables rollback (esp32-arduino-lib-builder release/v4.4
 * configs/defconfig.common:5); IDF 4.4 also writes the old name (components/bootloader/sdkconfig.rename). */
#ifndef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
#endif
#define CONFIG_APP_ROLLBACK_ENABLE CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
#else
#ifndef CONFIG_ESP_HTTP_CLIENT_ENABLE_HTTPS
#define CONFIG_ESP_HTTP_CLIENT_ENABLE_HTTPS 1  /* components/esp_http_client/Kconfig: default y */
#endif
#endif
/* components/bootloader/Kconfig.app_rollback:41-53: the eFuse field of the secure version, by target. */
#if CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK && !defined(CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD)
#if CONFIG_IDF_TARGET_ESP32
#define CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD 32
#elif CONFIG_IDF_TARGET_ESP32C2
#define CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD 4
#else
#define CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD 16
#endif
#endif
/* Derived from the displayed options, as components/bootloader/Kconfig.projbuild:444-461 derives them. */
#if CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT
#define CONFIG_SECURE_SIGNED_ON_UPDATE 1
#define CONFIG_SECURE_SIGNED_APPS 1
#endif
/* components/nvs_sec_provider/Kconfig:32-36: the HMAC scheme's eFuse key ID defaults to -1, which
 * nvs_sec_provider.c:109-111 refuses with #error (main_idf.cpp does the same). */
#if CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC && !defined(CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID)
#define CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID -1
#endif
