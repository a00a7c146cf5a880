/* esp_hmac.h (ESP-IDF 5.x API) for the host runtime: the HMAC peripheral in upstream mode over the simulated eFuse
 * key blocks (idf_nvs_sec.cpp). esp-idf v5.5.3 components/esp_hw_support/include/esp_hmac.h:43 (esp_hmac_calculate),
 * components/hal/include/hal/hmac_types.h:16-27 (hmac_key_id_t). As on the chip, a key block whose purpose is not
 * HMAC_UP gives ESP_FAIL; the key itself is never readable. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HMAC_KEY0 = 0,
    HMAC_KEY1,
    HMAC_KEY2,
    HMAC_KEY3,
    HMAC_KEY4,
    HMAC_KEY5,
    HMAC_KEY_MAX = 8,
} hmac_key_id_t;

esp_err_t esp_hmac_calculate(hmac_key_id_t key_id, const void *message, size_t message_len, uint8_t *hmac);

#ifdef __cplusplus
}
#endif
