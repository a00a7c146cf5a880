// Host runtime: esp_adc's oneshot driver (esp_adc/adc_oneshot.h), with the argument checks of ESP-IDF v5.5.3's
// components/esp_adc/adc_oneshot.c:85-99, 191-194, 215-216, 277-280. The converter is a stand-in (see the header).
#include <stdint.h>

#include <mutex>

#include "esp_adc/adc_oneshot.h"
#include "esp_log.h"
#include "gen_sim.h"

struct adc_oneshot_unit_ctx_t {
    adc_unit_t unit_id;
};

namespace {

const char *TAG = "adc_oneshot";
constexpr int UNITS = 2;
constexpr int CHANNELS = 10;          // SOC_ADC_CHANNEL_NUM of the ESP32-S3, per unit
constexpr int MIN_BITWIDTH = 12, MAX_BITWIDTH = 12;   // SOC_ADC_RTC_MIN/MAX_BITWIDTH of the ESP32-S3
std::mutex claims;
adc_oneshot_unit_ctx_t units[UNITS];
bool claimed[UNITS];

}  // namespace

extern "C" esp_err_t adc_oneshot_new_unit(const adc_oneshot_unit_init_cfg_t *init_config,
                                          adc_oneshot_unit_handle_t *ret_unit) {
    if (init_config == nullptr || ret_unit == nullptr) {
        ESP_LOGE(TAG, "invalid argument: null pointer");
        return ESP_ERR_INVALID_ARG;
    }
    const int unit = static_cast<int>(init_config->unit_id);
    if (unit < 0 || unit >= UNITS) {
        ESP_LOGE(TAG, "invalid unit");
        return ESP_ERR_INVALID_ARG;
    }
    std::lock_guard<std::mutex> lock(claims);
    if (claimed[unit]) {
        ESP_LOGE(TAG, "adc%d is already in use", unit + 1);
        return ESP_ERR_NOT_FOUND;
    }
    claimed[unit] = true;
    units[unit].unit_id = init_config->unit_id;
    *ret_unit = &units[unit];
    return ESP_OK;
}

extern "C" esp_err_t adc_oneshot_config_channel(adc_oneshot_unit_handle_t handle, adc_channel_t channel,
                                                const adc_oneshot_chan_cfg_t *config) {
    if (handle == nullptr || config == nullptr) {
        ESP_LOGE(TAG, "invalid argument: null pointer");
        return ESP_ERR_INVALID_ARG;
    }
    const int bitwidth = static_cast<int>(config->bitwidth);
    if (static_cast<int>(config->atten) > ADC_ATTEN_DB_12 ||
        !(bitwidth == ADC_BITWIDTH_DEFAULT || (bitwidth >= MIN_BITWIDTH && bitwidth <= MAX_BITWIDTH)) ||
        static_cast<int>(channel) >= CHANNELS) {
        ESP_LOGE(TAG, "invalid attenuation, bitwidth or channel");
        return ESP_ERR_INVALID_ARG;
    }
    return ESP_OK;
}

extern "C" esp_err_t adc_oneshot_read(adc_oneshot_unit_handle_t handle, adc_channel_t chan, int *out_raw) {
    if (handle == nullptr || out_raw == nullptr || static_cast<int>(chan) >= CHANNELS) {
        ESP_LOGE(TAG, "invalid argument");
        return ESP_ERR_INVALID_ARG;
    }
    const uint32_t seconds = gen_sim_millis() / 1000;
    *out_raw = 1800 + static_cast<int>((static_cast<uint32_t>(chan) * 37 + seconds) % 200);
    return ESP_OK;
}

extern "C" esp_err_t adc_oneshot_del_unit(adc_oneshot_unit_handle_t handle) {
    if (handle == nullptr) {
        ESP_LOGE(TAG, "invalid argument: null pointer");
        return ESP_ERR_INVALID_ARG;
    }
    std::lock_guard<std::mutex> lock(claims);
    const int unit = static_cast<int>(handle->unit_id);
    if (!claimed[unit]) {
        ESP_LOGE(TAG, "adc%d isn't in use", unit + 1);
        return ESP_ERR_NOT_FOUND;
    }
    claimed[unit] = false;
    return ESP_OK;
}
