// The greenhouse controller: what it sends and how it answers. The hooks gen_link calls are declared in app.h;
// each part lives in a file of its own (soil.c, status_light.c), and this file only puts them together.

#include <stdio.h>
#include <string.h>

#include "esp_log.h"

#include "app.h"
#include "soil.h"
#include "status_light.h"

#define DRY_BELOW_PCT 30

static const char *TAG = "app";

void app_setup(void)
{
    const gen_vars_t *vars = gen_vars();
    ESP_LOGI(TAG, "%s: soil probe on ADC1 channel %ld", vars->room, (long)vars->soil_channel);
    soil_begin((int)vars->soil_channel);
    if (vars->status_light) {
        status_light_begin();
    }
}

void app_loop(void)
{
}

int app_build_telemetry(char *payload, size_t capacity)
{
    const gen_vars_t *vars = gen_vars();
    const int soil = soil_percent();
    if (soil < 0) {
        return -1;  // nothing to send this time: the probe did not answer
    }
    if (soil < DRY_BELOW_PCT) {
        gen_link_log(GEN_LINK_LOG_WARN, "%s: soil at %d%%, below %d%%", vars->room, soil, DRY_BELOW_PCT);
    }
    if (vars->status_light) {
        status_light_show(soil < DRY_BELOW_PCT);
    }
    return snprintf(payload, capacity, "{\"room\":\"%s\",\"soil_pct\":%d}", vars->room, soil);
}

void app_on_command(const char *topic, const uint8_t *payload, size_t length)
{
    ESP_LOGI(TAG, "[app] command on %s: %.*s", topic, (int)length, (const char *)payload);
    publish_ack(payload, length);  // acknowledge by echoing the payload
}
