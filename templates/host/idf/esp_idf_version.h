/* esp_idf_version.h for the host runtime: the IDF under the chosen framework
 * (Arduino-ESP32 2.0.17 is built on IDF 4.4.7; the ESP-IDF flavour targets IDF 5.5). */
#pragma once

#ifdef ARDUINO
#define ESP_IDF_VERSION_MAJOR 4
#define ESP_IDF_VERSION_MINOR 4
#define ESP_IDF_VERSION_PATCH 7
#else
#define ESP_IDF_VERSION_MAJOR 5
#define ESP_IDF_VERSION_MINOR 5
#define ESP_IDF_VERSION_PATCH 3
#endif
#define ESP_IDF_VERSION_VAL(major, minor, patch) ((major << 16) | (minor << 8) | (patch))
#define ESP_IDF_VERSION ESP_IDF_VERSION_VAL(ESP_IDF_VERSION_MAJOR, ESP_IDF_VERSION_MINOR, ESP_IDF_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif
const char *esp_get_idf_version(void);
#ifdef __cplusplus
}
#endif
