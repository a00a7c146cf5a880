/* esp_adc/adc_oneshot.h: the ADC in oneshot mode, with the types of hal/adc_types.h it uses (ESP-IDF v5.5.3,
 * components/esp_adc/include/esp_adc/adc_oneshot.h and components/hal/include/hal/adc_types.h; same names, values
 * and fields). A stand-in converter: a channel reads a value that drifts slowly near 1800 (as analogRead does in
 * the Arduino runtime). Approximation: every unit has the ESP32-S3's 10 channels. */
#ifndef GEN_HOST_ADC_ONESHOT_H
#define GEN_HOST_ADC_ONESHOT_H

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ADC_UNIT_1,
    ADC_UNIT_2,
} adc_unit_t;

typedef enum {
    ADC_CHANNEL_0,
    ADC_CHANNEL_1,
    ADC_CHANNEL_2,
    ADC_CHANNEL_3,
    ADC_CHANNEL_4,
    ADC_CHANNEL_5,
    ADC_CHANNEL_6,
    ADC_CHANNEL_7,
    ADC_CHANNEL_8,
    ADC_CHANNEL_9,
    ADC_CHANNEL_10,
} adc_channel_t;

typedef enum {
    ADC_ATTEN_DB_0 = 0,
    ADC_ATTEN_DB_2_5 = 1,
    ADC_ATTEN_DB_6 = 2,
    ADC_ATTEN_DB_12 = 3,
} adc_atten_t;

typedef enum {
    ADC_BITWIDTH_DEFAULT = 0,
    ADC_BITWIDTH_9 = 9,
    ADC_BITWIDTH_10 = 10,
    ADC_BITWIDTH_11 = 11,
    ADC_BITWIDTH_12 = 12,
    ADC_BITWIDTH_13 = 13,
} adc_bitwidth_t;

typedef enum {
    ADC_ULP_MODE_DISABLE = 0,
    ADC_ULP_MODE_FSM = 1,
    ADC_ULP_MODE_RISCV = 2,
} adc_ulp_mode_t;

typedef int adc_oneshot_clk_src_t;   /* soc_periph_adc_rtc_clk_src_t on the chip; 0 is its default */

typedef struct adc_oneshot_unit_ctx_t *adc_oneshot_unit_handle_t;

typedef struct {
    adc_unit_t unit_id;
    adc_oneshot_clk_src_t clk_src;
    adc_ulp_mode_t ulp_mode;
} adc_oneshot_unit_init_cfg_t;

typedef struct {
    adc_atten_t atten;
    adc_bitwidth_t bitwidth;
} adc_oneshot_chan_cfg_t;

/* ESP_ERR_INVALID_ARG for NULL or an unknown unit, ESP_ERR_NOT_FOUND for a unit already in use. */
esp_err_t adc_oneshot_new_unit(const adc_oneshot_unit_init_cfg_t *init_config, adc_oneshot_unit_handle_t *ret_unit);
/* ESP_ERR_INVALID_ARG for NULL, an attenuation, bit width or channel the unit does not have. */
esp_err_t adc_oneshot_config_channel(adc_oneshot_unit_handle_t handle, adc_channel_t channel,
                                     const adc_oneshot_chan_cfg_t *config);
esp_err_t adc_oneshot_read(adc_oneshot_unit_handle_t handle, adc_channel_t chan, int *out_raw);
esp_err_t adc_oneshot_del_unit(adc_oneshot_unit_handle_t handle);

#ifdef __cplusplus
}
#endif

#endif
