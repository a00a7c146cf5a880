/* esp_efuse.h (ESP-IDF 5.5.3 components/efuse/include/esp_efuse.h:385-408; the same three functions in IDF 4.4)
 * for the host runtime: the eFuse secure version of app anti-rollback, kept in the file GEN_SIM_EFUSE_SECURE_VERSION
 * names (the simulated bootloader reads and raises the same one). As on the chip, it only grows, it is compared only
 * with CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK, and it counts at most CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

uint32_t esp_efuse_read_secure_version(void);
bool esp_efuse_check_secure_version(uint32_t secure_version);
esp_err_t esp_efuse_update_secure_version(uint32_t secure_version);

#ifdef __cplusplus
}
#endif
