/* nvs_sec_provider.h (ESP-IDF 5.x API) for the host runtime: the two schemes that protect the NVS encryption keys
 * (esp-idf v5.5.3 components/nvs_sec_provider/include/nvs_sec_provider.h:24-29,34-38,43-54,60-69,84,98,110).
 * Our main() registers the scheme the app's sdkconfig chooses, as the device's ESP_SYSTEM_INIT_FN does
 * (nvs_sec_provider.c:84-103, 266-277); idf_nvs_sec.cpp implements both. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"
#include "esp_partition.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

/* soc/soc_caps.h: every chip gen targets has the HMAC peripheral but the ESP32 (SOC_HMAC_SUPPORTED). */
#if !defined(SOC_HMAC_SUPPORTED) && !defined(CONFIG_IDF_TARGET_ESP32)
#define SOC_HMAC_SUPPORTED 1
#endif

#if SOC_HMAC_SUPPORTED
#include "esp_hmac.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define ESP_ERR_NVS_SEC_BASE                        0xF000
#define ESP_ERR_NVS_SEC_HMAC_KEY_NOT_FOUND          (ESP_ERR_NVS_SEC_BASE + 0x01)
#define ESP_ERR_NVS_SEC_HMAC_KEY_BLK_ALREADY_USED   (ESP_ERR_NVS_SEC_BASE + 0x02)
#define ESP_ERR_NVS_SEC_HMAC_KEY_GENERATION_FAILED  (ESP_ERR_NVS_SEC_BASE + 0x03)
#define ESP_ERR_NVS_SEC_HMAC_XTS_KEYS_DERIV_FAILED  (ESP_ERR_NVS_SEC_BASE + 0x04)

typedef enum {
    NVS_SEC_SCHEME_FLASH_ENC = 0,
    NVS_SEC_SCHEME_HMAC,
    NVS_SEC_SCHEME_MAX
} nvs_sec_scheme_id_t;

typedef struct {
    const esp_partition_t *nvs_keys_part;
} nvs_sec_config_flash_enc_t;

/* On the device the first partition of subtype nvs_keys; here the file GEN_SIM_NVS_KEYS stands for it (it is not in
 * the simulated flash), see nvs_flash_read_security_cfg in idf_nvs.cpp. */
const esp_partition_t *gen_sim_nvs_keys_partition(void);
#define NVS_SEC_PROVIDER_CFG_FLASH_ENC_DEFAULT() {                \
        .nvs_keys_part      = gen_sim_nvs_keys_partition(),       \
}

#if SOC_HMAC_SUPPORTED
typedef struct {
    hmac_key_id_t hmac_key_id;
} nvs_sec_config_hmac_t;

#define NVS_SEC_PROVIDER_CFG_HMAC_DEFAULT() {                                     \
        .hmac_key_id      = (hmac_key_id_t)(CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID),    \
}
#endif

esp_err_t nvs_sec_provider_register_flash_enc(const nvs_sec_config_flash_enc_t *sec_scheme_cfg,
                                              nvs_sec_scheme_t **sec_scheme_handle_out);
#if SOC_HMAC_SUPPORTED
esp_err_t nvs_sec_provider_register_hmac(const nvs_sec_config_hmac_t *sec_scheme_cfg,
                                         nvs_sec_scheme_t **sec_scheme_handle_out);
#endif
esp_err_t nvs_sec_provider_deregister(nvs_sec_scheme_t *sec_scheme_handle);

#ifdef __cplusplus
}
#endif
