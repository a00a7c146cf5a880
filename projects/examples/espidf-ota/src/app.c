// Your application: what the device sends and how it answers. gen created this file once, next to the spec,
// and never overwrites it: it is yours to edit and to keep in git. Every .c/.cpp/.h file of this src/ folder is
// compiled for every device of the spec (add files as your app grows; your own libraries go in lib/ (Arduino) or
// components/ (ESP-IDF) next to the spec). The functions gen_link calls are declared in app.h, which gen renders
// into each device's firmware project; gen_link.h documents the link itself (publishing by name, and
// gen_link_log() for log lines that also reach the device's log topic when the spec turns on log:).

#include <stdio.h>

#include "esp_log.h"
#include "esp_system.h"
#include "esp_timer.h"

#include "app.h"

static const char *TAG = "app";

void app_setup(void)
{
}

void app_loop(void)
{
}

int app_build_telemetry(char *payload, size_t capacity)
{
    return snprintf(payload, capacity, "{\"uptime_s\":%lld,\"free_heap\":%lu}",
                    (long long)(esp_timer_get_time() / 1000000), (unsigned long)esp_get_free_heap_size());
}

void app_on_command(const char *topic, const uint8_t *payload, size_t length)
{
    ESP_LOGI(TAG, "[app] command on %s: %.*s", topic, (int)length, (const char *)payload);
    publish_ack(payload, length);  // acknowledge by echoing the payload
}
