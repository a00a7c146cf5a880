/* esp_app_desc.h (ESP-IDF 5.5.3 esp_app_format) for the host runtime. esp_app_get_description() is the running
 * image's: read from its slot of GEN_SIM_FLASH, as the chip maps it from flash. */
#pragma once

#ifdef ARDUINO
#error "esp_app_desc.h is ESP-IDF 5.x; IDF 4.4 (under Arduino-ESP32 2.0.x) declares esp_app_desc_t in esp_app_format.h"
#endif

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ESP_APP_DESC_MAGIC_WORD (0xABCD5432)

typedef struct {
    uint32_t magic_word;
    uint32_t secure_version;
    uint32_t reserv1[2];
    char version[32];
    char project_name[32];
    char time[16];
    char date[16];
    char idf_ver[32];
    uint8_t app_elf_sha256[32];
    uint16_t min_efuse_blk_rev_full;
    uint16_t max_efuse_blk_rev_full;
    uint8_t mmu_page_size;
    uint8_t reserv3[3];
    uint32_t reserv2[18];
} esp_app_desc_t;

const esp_app_desc_t *esp_app_get_description(void);

#ifdef __cplusplus
}
#endif
