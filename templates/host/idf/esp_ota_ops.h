/* esp_ota_ops.h (ESP-IDF 5.5.3 app_update; the same functions in esp-idf v4.4.7 under Arduino) for the host
 * runtime. The rules of esp_ota_ops.c over the flash file GEN_SIM_FLASH: otadata entries with their sequence
 * numbers and states, NEW written by esp_ota_set_boot_partition when CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE is set,
 * no esp_ota_begin while the running image is PENDING_VERIFY, images verified as esp_image_verify does (and their
 * Secure Boot V2 signature with CONFIG_SECURE_SIGNED_ON_UPDATE), and with CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK their
 * secure_version against the eFuse (esp_efuse.h). The running partition is the slot the simulated bootloader
 * started (GEN_SIM_BOOT_SLOT), where the chip's MMU would say. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_flash_partitions.h"
#include "esp_partition.h"
#ifdef ARDUINO
#include "esp_app_format.h"
#else
#include "esp_app_desc.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_SIZE_UNKNOWN 0xffffffff
#define OTA_WITH_SEQUENTIAL_WRITES 0xfffffffe

#define ESP_ERR_OTA_BASE 0x1500
#define ESP_ERR_OTA_PARTITION_CONFLICT (ESP_ERR_OTA_BASE + 0x01)
#define ESP_ERR_OTA_SELECT_INFO_INVALID (ESP_ERR_OTA_BASE + 0x02)
#define ESP_ERR_OTA_VALIDATE_FAILED (ESP_ERR_OTA_BASE + 0x03)
#define ESP_ERR_OTA_SMALL_SEC_VER (ESP_ERR_OTA_BASE + 0x04)
#define ESP_ERR_OTA_ROLLBACK_FAILED (ESP_ERR_OTA_BASE + 0x05)
#define ESP_ERR_OTA_ROLLBACK_INVALID_STATE (ESP_ERR_OTA_BASE + 0x06)

typedef uint32_t esp_ota_handle_t;

esp_err_t esp_ota_begin(const esp_partition_t *partition, size_t image_size, esp_ota_handle_t *out_handle);
esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size);
esp_err_t esp_ota_end(esp_ota_handle_t handle);
esp_err_t esp_ota_abort(esp_ota_handle_t handle);
esp_err_t esp_ota_set_boot_partition(const esp_partition_t *partition);
const esp_partition_t *esp_ota_get_boot_partition(void);
const esp_partition_t *esp_ota_get_running_partition(void);
const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from);
esp_err_t esp_ota_get_partition_description(const esp_partition_t *partition, esp_app_desc_t *app_desc);
uint8_t esp_ota_get_app_partition_count(void);
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void);
esp_err_t esp_ota_mark_app_invalid_rollback(void);
esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void);
const esp_partition_t *esp_ota_get_last_invalid_partition(void);
esp_err_t esp_ota_get_state_partition(const esp_partition_t *partition, esp_ota_img_states_t *ota_state);
bool esp_ota_check_rollback_is_possible(void);

#ifdef __cplusplus
}
#endif
