/* esp_timer.h (ESP-IDF 5.x API) for the host runtime: the time source only. */
#pragma once

#include <stdint.h>
#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Microseconds since boot. */
int64_t esp_timer_get_time(void);

#ifdef __cplusplus
}
#endif
