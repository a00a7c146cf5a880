/* nvs_flash.h (ESP-IDF 5.x API) for the host runtime. nvs_flash_init() loads the image named by
 * GEN_SIM_NVS (no variable: an empty partition); an unreadable image gives ESP_ERR_NVS_NO_FREE_PAGES,
 * like a corrupt partition on the device. nvs_flash_erase() empties the in-memory copy only. */
#pragma once

#include "esp_err.h"
#include "nvs.h"

#ifdef __cplusplus
extern "C" {
#endif

esp_err_t nvs_flash_init(void);
esp_err_t nvs_flash_init_partition(const char *partition_label);
esp_err_t nvs_flash_deinit(void);
esp_err_t nvs_flash_erase(void);
esp_err_t nvs_flash_erase_partition(const char *part_name);

#ifdef __cplusplus
}
#endif
