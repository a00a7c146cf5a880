// Host runtime: esp_https_ota (esp-idf v5.5.3 components/esp_https_ota/src/esp_https_ota.c) over our
// esp_http_client and esp_ota_ops, the same state machine: begin connects (server verification required) and
// reads the reply's headers; get_img_desc reads the first 1024 bytes; the first perform calls esp_ota_begin,
// checks the image header's chip id and revision before writing, then each perform writes one read; a read of 0
// before Content-Length is a cut connection; finish is esp_ota_end, then esp_ota_set_boot_partition. Events
// (ESP_HTTPS_OTA_EVENT) are not posted; partial downloads, resumption and decryption are not provided.
#include <stdlib.h>
#include <string.h>

#include <algorithm>

#include "esp_app_format.h"
#include "esp_https_ota.h"
#include "esp_log.h"
#include "gen_sim.h"

ESP_EVENT_DEFINE_BASE(ESP_HTTPS_OTA_EVENT);

static const char* TAG = "esp_https_ota";

namespace {

const int IMAGE_HEADER_SIZE = 1024;        // sizeof(esp_image_header_t) + segment header + esp_app_desc_t + more
const int DEFAULT_OTA_BUF_SIZE = IMAGE_HEADER_SIZE;

enum State { OTA_INIT, OTA_BEGIN, OTA_IN_PROGRESS, OTA_SUCCESS };

struct HttpsOta {
    esp_ota_handle_t update_handle = 0;
    const esp_partition_t* staging = nullptr;
    esp_http_client_handle_t http_client = nullptr;
    char* buffer = nullptr;
    int buffer_size = 0;
    int binary_file_len = 0;
    int image_length = -1;
    State state = OTA_INIT;
};

void cleanup(HttpsOta* ota) {
    if (ota->http_client) {
        esp_http_client_close(ota->http_client);
        esp_http_client_cleanup(ota->http_client);
    }
    free(ota->buffer);
    delete ota;
}

esp_err_t http_connect(HttpsOta* ota) {
    esp_err_t err = esp_http_client_open(ota->http_client, 0);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "Failed to open HTTP connection: %s", esp_err_to_name(err));
        return err;
    }
    if (esp_http_client_fetch_headers(ota->http_client) < 0 && esp_http_client_get_status_code(ota->http_client) < 0) {
        return ESP_FAIL;
    }
    const int status = esp_http_client_get_status_code(ota->http_client);
    if (status >= 400) {
        ESP_LOGE(TAG, "%s error (%d)", status >= 500 ? "Server" : status == 404 ? "File not found" : "Client", status);
        return ESP_FAIL;
    }
    if (status != 200) {
        ESP_LOGE(TAG, "Unexpected http status %d", status);
        return ESP_FAIL;
    }
    return ESP_OK;
}

esp_err_t read_header(HttpsOta* ota) {
    int wanted = IMAGE_HEADER_SIZE, bytes = 0;
    while (wanted > 0 && !esp_http_client_is_complete_data_received(ota->http_client)) {
        const int n = esp_http_client_read(ota->http_client, ota->buffer + bytes, wanted);
        if (n < 0) {
            if (n == -ESP_ERR_HTTP_EAGAIN) continue;
            break;
        }
        if (n == 0) break;
        wanted -= n;
        bytes += n;
    }
    if (wanted > 0) {
        ESP_LOGE(TAG, "Complete headers were not received");
        return ESP_FAIL;
    }
    ota->binary_file_len = bytes;
    return ESP_OK;
}

esp_err_t ota_write(HttpsOta* ota, const void* data, int length) {
    esp_err_t err = esp_ota_write(ota->update_handle, data, static_cast<size_t>(length));
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "Error: esp_ota_write failed! err=0x%x", err);
        return err;
    }
    ota->binary_file_len += length;
    return ESP_ERR_HTTPS_OTA_IN_PROGRESS;
}

}  // namespace

extern "C" {

esp_err_t esp_https_ota_begin(const esp_https_ota_config_t* config, esp_https_ota_handle_t* handle) {
    if (handle == nullptr || config == nullptr || config->http_config == nullptr) {
        ESP_LOGE(TAG, "esp_https_ota_begin: Invalid argument");
        if (handle) *handle = nullptr;
        return ESP_ERR_INVALID_ARG;
    }
    const esp_http_client_config_t* http = config->http_config;
    if (!(http->cert_pem || http->use_global_ca_store || http->crt_bundle_attach != nullptr)) {
        ESP_LOGE(TAG, "No option for server verification is enabled in esp_http_client config.");
        *handle = nullptr;
        return ESP_ERR_INVALID_ARG;
    }
    auto* ota = new HttpsOta;
    ota->http_client = esp_http_client_init(http);
    if (ota->http_client == nullptr) {
        ESP_LOGE(TAG, "Failed to initialise HTTP connection");
        cleanup(ota);
        *handle = nullptr;
        return ESP_FAIL;
    }
    esp_err_t err = http_connect(ota);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "Failed to establish HTTP connection");
        cleanup(ota);
        *handle = nullptr;
        return err;
    }
    ota->image_length = static_cast<int>(esp_http_client_get_content_length(ota->http_client));
    ESP_LOGI(TAG, "Starting OTA...");
    ota->staging = config->partition.staging ? esp_partition_verify(config->partition.staging)
                                             : esp_ota_get_next_update_partition(nullptr);
    if (ota->staging == nullptr) {
        ESP_LOGE(TAG, "Given staging partition or another suitable Passive OTA partition could not be found");
        cleanup(ota);
        *handle = nullptr;
        return ESP_FAIL;
    }
    ESP_LOGI(TAG, "Writing to <%s> partition at offset 0x%x", ota->staging->label,
             static_cast<unsigned>(ota->staging->address));
    ota->buffer_size = std::max(http->buffer_size, DEFAULT_OTA_BUF_SIZE);
    ota->buffer = static_cast<char*>(malloc(static_cast<size_t>(ota->buffer_size)));
    ota->state = OTA_BEGIN;
    *handle = ota;
    return ESP_OK;
}

esp_err_t esp_https_ota_get_img_desc(esp_https_ota_handle_t handle, esp_app_desc_t* new_app_info) {
    auto* ota = static_cast<HttpsOta*>(handle);
    if (ota == nullptr || new_app_info == nullptr) return ESP_ERR_INVALID_ARG;
    if (ota->state < OTA_BEGIN) return ESP_ERR_INVALID_STATE;
    const int offset = sizeof(esp_image_header_t) + sizeof(esp_image_segment_header_t);
    if (ota->binary_file_len < offset + static_cast<int>(sizeof(esp_app_desc_t)) && read_header(ota) != ESP_OK) {
        return ESP_FAIL;
    }
    const auto* description = reinterpret_cast<const esp_app_desc_t*>(ota->buffer + offset);
    if (description->magic_word != ESP_APP_DESC_MAGIC_WORD) {
        ESP_LOGE(TAG, "Incorrect app descriptor magic");
        return ESP_FAIL;
    }
    memcpy(new_app_info, description, sizeof *new_app_info);
    return ESP_OK;
}

esp_err_t esp_https_ota_perform(esp_https_ota_handle_t handle) {
    auto* ota = static_cast<HttpsOta*>(handle);
    if (ota == nullptr) return ESP_ERR_INVALID_ARG;
    if (ota->state < OTA_BEGIN) return ESP_FAIL;
    if (ota->state == OTA_BEGIN) {
        esp_err_t err = esp_ota_begin(ota->staging, OTA_WITH_SEQUENTIAL_WRITES, &ota->update_handle);
        if (err != ESP_OK) {
            ESP_LOGE(TAG, "esp_ota_begin failed (%s)", esp_err_to_name(err));
            return err;
        }
        ota->state = OTA_IN_PROGRESS;
        int length = ota->binary_file_len;
        if (length == 0) {
            if (read_header(ota) != ESP_OK) return ESP_FAIL;
            length = IMAGE_HEADER_SIZE;
        }
        ota->binary_file_len = 0;
        const auto* header = reinterpret_cast<const esp_image_header_t*>(ota->buffer);
        if (static_cast<uint16_t>(header->chip_id) != gen_sim_firmware_chip_id) {
            ESP_LOGE(TAG, "Mismatch chip id, expected %d, found %d", gen_sim_firmware_chip_id,
                     static_cast<int>(header->chip_id));
            return ESP_ERR_INVALID_VERSION;
        }
        if (header->min_chip_rev_full > GEN_SIM_CHIP_REVISION) {
            ESP_LOGE(TAG, "Image requires chip rev >= v%d.%d, but chip is v3.0", header->min_chip_rev_full / 100,
                     header->min_chip_rev_full % 100);
            return ESP_ERR_INVALID_VERSION;
        }
        return ota_write(ota, ota->buffer, length);
    }
    if (ota->state != OTA_IN_PROGRESS) {
        ESP_LOGE(TAG, "Invalid ESP HTTPS OTA State");
        return ESP_FAIL;
    }
    const int n = esp_http_client_read(ota->http_client, ota->buffer, ota->buffer_size);
    if (n == 0) {
        if (!esp_http_client_is_complete_data_received(ota->http_client)) {
            ESP_LOGE(TAG, "Connection closed before complete data was received!");
            return ESP_FAIL;
        }
    } else if (n > 0) {
        return ota_write(ota, ota->buffer, n);
    } else if (n == -ESP_ERR_HTTP_EAGAIN) {
        return ESP_ERR_HTTPS_OTA_IN_PROGRESS;
    } else {
        ESP_LOGE(TAG, "data read %d", n);
        return ESP_FAIL;
    }
    ota->state = OTA_SUCCESS;
    return ESP_OK;
}

bool esp_https_ota_is_complete_data_received(esp_https_ota_handle_t handle) {
    return esp_http_client_is_complete_data_received(static_cast<HttpsOta*>(handle)->http_client);
}

esp_err_t esp_https_ota_finish(esp_https_ota_handle_t handle) {
    auto* ota = static_cast<HttpsOta*>(handle);
    if (ota == nullptr) return ESP_ERR_INVALID_ARG;
    if (ota->state < OTA_BEGIN) return ESP_FAIL;
    esp_err_t err = ESP_OK;
    if (ota->state == OTA_SUCCESS || ota->state == OTA_IN_PROGRESS) err = esp_ota_end(ota->update_handle);
    if (err == ESP_OK && ota->state == OTA_SUCCESS) {
        err = esp_ota_set_boot_partition(ota->staging);
        if (err != ESP_OK) ESP_LOGE(TAG, "esp_ota_set_boot_partition failed! err=0x%x", err);
    }
    cleanup(ota);
    return err;
}

esp_err_t esp_https_ota_abort(esp_https_ota_handle_t handle) {
    auto* ota = static_cast<HttpsOta*>(handle);
    if (ota == nullptr) return ESP_ERR_INVALID_ARG;
    if (ota->state < OTA_BEGIN) return ESP_FAIL;
    esp_err_t err = ESP_OK;
    if (ota->state == OTA_SUCCESS || ota->state == OTA_IN_PROGRESS) err = esp_ota_abort(ota->update_handle);
    cleanup(ota);
    return err;
}

int esp_https_ota_get_image_len_read(esp_https_ota_handle_t handle) {
    return handle ? static_cast<HttpsOta*>(handle)->binary_file_len : -1;
}

int esp_https_ota_get_status_code(esp_https_ota_handle_t handle) {
    return handle ? esp_http_client_get_status_code(static_cast<HttpsOta*>(handle)->http_client) : -1;
}

int esp_https_ota_get_image_size(esp_https_ota_handle_t handle) {
    return handle ? static_cast<HttpsOta*>(handle)->image_length : -1;
}

esp_err_t esp_https_ota(const esp_https_ota_config_t* config) {
    esp_https_ota_handle_t handle = nullptr;
    esp_err_t err = esp_https_ota_begin(config, &handle);
    if (err != ESP_OK) return err;
    while ((err = esp_https_ota_perform(handle)) == ESP_ERR_HTTPS_OTA_IN_PROGRESS) {
    }
    if (err != ESP_OK || !esp_https_ota_is_complete_data_received(handle)) {
        esp_https_ota_abort(handle);
        return err != ESP_OK ? err : ESP_FAIL;
    }
    return esp_https_ota_finish(handle);
}

}  // extern "C"
