/* esp_https_ota.h (ESP-IDF 5.5.3) for the host runtime: the state machine of esp_https_ota.c over our
 * esp_http_client: begin connects and reads the headers, the first perform reads the image header and checks its
 * chip id (CONFIG_IDF_FIRMWARE_CHIP_ID) and revision before anything is written, each perform writes one read
 * into the staging partition, a read of 0 before Content-Length is "Connection closed before complete data was
 * received", finish is esp_ota_end then esp_ota_set_boot_partition. Events (ESP_HTTPS_OTA_EVENT) are not posted. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_event.h"
#include "esp_http_client.h"
#include "esp_partition.h"
#include "esp_ota_ops.h"
#include "sdkconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

ESP_EVENT_DECLARE_BASE(ESP_HTTPS_OTA_EVENT);

typedef enum {
    ESP_HTTPS_OTA_START,
    ESP_HTTPS_OTA_CONNECTED,
    ESP_HTTPS_OTA_GET_IMG_DESC,
    ESP_HTTPS_OTA_VERIFY_CHIP_ID,
    ESP_HTTPS_OTA_VERIFY_CHIP_REVISION,
    ESP_HTTPS_OTA_DECRYPT_CB,
    ESP_HTTPS_OTA_WRITE_FLASH,
    ESP_HTTPS_OTA_UPDATE_BOOT_PARTITION,
    ESP_HTTPS_OTA_FINISH,
    ESP_HTTPS_OTA_ABORT,
} esp_https_ota_event_t;

typedef void *esp_https_ota_handle_t;
typedef esp_err_t (*http_client_init_cb_t)(esp_http_client_handle_t);

/* CONFIG_ESP_HTTPS_OTA_DECRYPT_CB is off by default, so its three fields are absent, as there. */
typedef struct {
    const esp_http_client_config_t *http_config;
    http_client_init_cb_t http_client_init_cb;
    bool bulk_flash_erase;
    bool partial_http_download;
    int max_http_request_size;
    uint32_t buffer_caps;
    bool ota_resumption;
    size_t ota_image_bytes_written;
    struct {
        const esp_partition_t *staging;
        const esp_partition_t *final;
        bool finalize_with_copy;
    } partition;
} esp_https_ota_config_t;

#define ESP_ERR_HTTPS_OTA_BASE (0x9000)
#define ESP_ERR_HTTPS_OTA_IN_PROGRESS (ESP_ERR_HTTPS_OTA_BASE + 1)

esp_err_t esp_https_ota(const esp_https_ota_config_t *ota_config);
esp_err_t esp_https_ota_begin(const esp_https_ota_config_t *ota_config, esp_https_ota_handle_t *handle);
esp_err_t esp_https_ota_perform(esp_https_ota_handle_t https_ota_handle);
bool esp_https_ota_is_complete_data_received(esp_https_ota_handle_t https_ota_handle);
esp_err_t esp_https_ota_finish(esp_https_ota_handle_t https_ota_handle);
esp_err_t esp_https_ota_abort(esp_https_ota_handle_t https_ota_handle);
esp_err_t esp_https_ota_get_img_desc(esp_https_ota_handle_t https_ota_handle, esp_app_desc_t *new_app_info);
int esp_https_ota_get_image_len_read(esp_https_ota_handle_t https_ota_handle);
int esp_https_ota_get_status_code(esp_https_ota_handle_t https_ota_handle);
int esp_https_ota_get_image_size(esp_https_ota_handle_t https_ota_handle);

#ifdef __cplusplus
}
#endif
