// The first file of a multi-file ESP-IDF app: the hooks app.h declares, built from the other files and a component.
#include "esp_log.h"

#include "app.h"
#include "readings.h"

static const char *TAG = "app";

void app_setup(void)
{
    readings_begin();
}

void app_loop(void)
{
}

int app_build_telemetry(char *payload, size_t capacity)
{
    return readings_format(payload, capacity);
}

void app_on_command(const char *topic, const uint8_t *payload, size_t length)
{
    ESP_LOGI(TAG, "[app] command on %s", topic);
    publish_ack(payload, length);
}
