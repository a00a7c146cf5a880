/* nvs_flash.h (ESP-IDF 5.x API) for the host runtime. nvs_flash_init() loads the image named by
 * GEN_SIM_NVS (no variable: an empty partition); an unreadable image gives ESP_ERR_NVS_NO_FREE_PAGES,
 * like a corrupt partition on the device. nvs_flash_erase() empties the in-memory copy only. */
#pragma once

#include "esp_err.h"
#include "nvs.h"
#include "esp_partition.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NVS encryption (esp-idf v5.5.3 components/nvs_flash/include/nvs_flash.h:17-25,204,222,241,263). With
 * CONFIG_NVS_ENCRYPTION nvs_flash_init() reads the keys through the registered scheme: from the nvs_keys partition,
 * here the file GEN_SIM_NVS_KEYS (on the device that partition is flash encrypted and read through it), or derived
 * by the HMAC peripheral from a key in eFuse (GEN_SIM_EFUSE_HMAC_UP_KEY), and decrypts GEN_SIM_NVS with them. */
#define NVS_KEY_SIZE 32

typedef struct {
    uint8_t eky[NVS_KEY_SIZE];
    uint8_t tky[NVS_KEY_SIZE];
} nvs_sec_cfg_t;

/* The security schemes (nvs_flash.h:30,35,40-46,279,288,302,316): nvs_flash_init() reads or generates the keys
 * through the registered scheme (nvs_sec_provider.h). */
typedef esp_err_t (*nvs_flash_generate_keys_t) (const void *scheme_data, nvs_sec_cfg_t* cfg);
typedef esp_err_t (*nvs_flash_read_cfg_t) (const void *scheme_data, nvs_sec_cfg_t* cfg);

typedef struct {
    int scheme_id;
    void *scheme_data;
    nvs_flash_generate_keys_t nvs_flash_key_gen;
    nvs_flash_read_cfg_t nvs_flash_read_cfg;
} nvs_sec_scheme_t;

esp_err_t nvs_flash_register_security_scheme(nvs_sec_scheme_t *scheme_cfg);
nvs_sec_scheme_t *nvs_flash_get_default_security_scheme(void);
esp_err_t nvs_flash_generate_keys_v2(nvs_sec_scheme_t *scheme_cfg, nvs_sec_cfg_t* cfg);
esp_err_t nvs_flash_read_security_cfg_v2(nvs_sec_scheme_t *scheme_cfg, nvs_sec_cfg_t* cfg);

esp_err_t nvs_flash_secure_init(nvs_sec_cfg_t *cfg);
esp_err_t nvs_flash_secure_init_partition(const char *partition_label, nvs_sec_cfg_t *cfg);
esp_err_t nvs_flash_generate_keys(const esp_partition_t *partition, nvs_sec_cfg_t *cfg);
esp_err_t nvs_flash_read_security_cfg(const esp_partition_t *partition, nvs_sec_cfg_t *cfg);

esp_err_t nvs_flash_init(void);
esp_err_t nvs_flash_init_partition(const char *partition_label);
esp_err_t nvs_flash_deinit(void);
esp_err_t nvs_flash_erase(void);
esp_err_t nvs_flash_erase_partition(const char *part_name);

#ifdef __cplusplus
}
#endif
