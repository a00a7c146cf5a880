/* esp_system.h (ESP-IDF 5.x API) for the host runtime. */
#pragma once

#include <stdint.h>
#include <stdbool.h>
#include "esp_err.h"
#include "esp_idf_version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ESP_RST_UNKNOWN, ESP_RST_POWERON, ESP_RST_EXT, ESP_RST_SW, ESP_RST_PANIC, ESP_RST_INT_WDT,
    ESP_RST_TASK_WDT, ESP_RST_WDT, ESP_RST_DEEPSLEEP, ESP_RST_BROWNOUT, ESP_RST_SDIO,
} esp_reset_reason_t;

typedef void (*shutdown_handler_t)(void);

/* Host: prints a line and exits the process with code 3 (the device reboots). */
void esp_restart(void) __attribute__((noreturn));
esp_reset_reason_t esp_reset_reason(void);
esp_err_t esp_register_shutdown_handler(shutdown_handler_t handle);
/* Host: a fixed plausible figure (the process heap is not the device's). */
uint32_t esp_get_free_heap_size(void);
uint32_t esp_get_free_internal_heap_size(void);
uint32_t esp_get_minimum_free_heap_size(void);
void esp_system_abort(const char *details) __attribute__((noreturn));

#ifdef ARDUINO
/* IDF 4.4 (under arduino-esp32 2.0.x) still declared these here. */
#include "esp_random.h"
#include "esp_mac.h"
#endif

#ifdef __cplusplus
}
#endif
