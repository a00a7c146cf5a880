// Reads the probe with ESP-IDF's oneshot ADC driver and turns the raw value into percent with the project's own
// component (components/soil_moisture).

#include "soil.h"

#include "esp_adc/adc_oneshot.h"
#include "gen_link.h"
#include "soil_moisture.h"

static adc_oneshot_unit_handle_t adc;
static adc_channel_t soil_channel;

bool soil_begin(int channel)
{
    const adc_oneshot_unit_init_cfg_t unit = {.unit_id = ADC_UNIT_1};
    const adc_oneshot_chan_cfg_t config = {.atten = ADC_ATTEN_DB_12, .bitwidth = ADC_BITWIDTH_DEFAULT};
    soil_channel = (adc_channel_t)channel;
    if (adc_oneshot_new_unit(&unit, &adc) != ESP_OK || adc_oneshot_config_channel(adc, soil_channel, &config) != ESP_OK) {
        gen_link_log(GEN_LINK_LOG_ERROR, "[soil] ADC1 channel %d cannot be read; check vars: soil_channel", channel);
        adc = NULL;
        return false;
    }
    return true;
}

int soil_percent(void)
{
    int raw = 0;
    if (adc == NULL || adc_oneshot_read(adc, soil_channel, &raw) != ESP_OK) {
        return -1;
    }
    return soil_moisture_percent(raw);
}
