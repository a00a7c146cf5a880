// The status light through espressif/led_strip, a component from the ESP-IDF registry (libraries: in device.yaml).
// gen simulate's host build cannot have a registry component (it compiles for Linux, offline) and defines
// GEN_HOST_BUILD: there this file prints what the light would show instead, so the rest of the app runs unchanged.

#include "status_light.h"

#include "esp_log.h"

#ifndef STATUS_LED_GPIO
#define STATUS_LED_GPIO 48   // build_flags: in device.yaml sets it (ESP32-S3-DevKitC-1 v1.0: 48; v1.1: 38)
#endif

static const char *TAG = "light";

#ifndef GEN_HOST_BUILD
#include "led_strip.h"

static led_strip_handle_t strip;

void status_light_begin(void)
{
    const led_strip_config_t strip_config = {.strip_gpio_num = STATUS_LED_GPIO, .max_leds = 1};
    const led_strip_rmt_config_t rmt_config = {.resolution_hz = 10 * 1000 * 1000};
    if (led_strip_new_rmt_device(&strip_config, &rmt_config, &strip) != ESP_OK) {
        ESP_LOGW(TAG, "no LED strip on GPIO %d", STATUS_LED_GPIO);
        strip = NULL;
    }
}

void status_light_show(bool dry)
{
    if (strip != NULL) {
        led_strip_set_pixel(strip, 0, dry ? 32 : 0, dry ? 0 : 32, 0);
        led_strip_refresh(strip);
    }
}
#else
void status_light_begin(void)
{
    ESP_LOGI(TAG, "host build: a stand-in status light on GPIO %d", STATUS_LED_GPIO);
}

void status_light_show(bool dry)
{
    ESP_LOGI(TAG, "host build: the status light shows %s", dry ? "red" : "green");
}
#endif
