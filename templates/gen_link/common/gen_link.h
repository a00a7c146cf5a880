// gen_link: gen's device runtime, the link between your application and the broker (WiFi station, clock, TLS,
// MQTT session with last will and birth message, capped backoff with jitter, keys made on the device, updates over
// the air). Plain C/C++ sources, the same in every project of a gen version; what differs between specs (topics,
// intervals, features, limits) comes from gen_config.h, which gen renders from the spec. Valid C and C++.
//
// Your application is every .c/.cpp/.h file in your project's src/. It implements the hooks below; gen_link calls
// them from one task (Arduino: loop(); ESP-IDF: the app_main task), never from an interrupt.
//
//   void app_setup(void);                 once at boot, before WiFi starts: set up sensors and pins
//   void app_loop(void);                  on every pass of the loop; return quickly (no delay(), no waiting)
//   int  app_build_<name>(char *payload, size_t capacity);
//                                         per publish entry with an interval: write the payload (at most
//                                         capacity - 1 bytes) and return its length, or -1 to send nothing
//   void app_on_<name>(const char *topic, const uint8_t *payload, size_t length);
//                                         per subscribe entry: a message arrived (payload NUL-terminated,
//                                         valid during the call; publishing from here is fine)
//
// app.h (rendered into the project) declares exactly the hooks the spec needs, with the spec's limits; the
// compiler names any you lack. With vars: in the spec, gen_vars()->NAME (gen_vars.h, included by app.h) holds this
// device's values, set before app_setup(). By default gen_link owns the entry points (Arduino setup()/loop(), ESP-IDF
// app_main()); build with -D GEN_LINK_OWN_MAIN (spec: build_flags) to write them yourself and call
// gen_link_start() once and gen_link_loop() repeatedly (ESP-IDF: gen_link_start() only; it runs its own task loop).
#ifndef GEN_LINK_H
#define GEN_LINK_H

#include <stdbool.h>
#include <stddef.h>

#define GEN_LINK_VERSION "0.1.0"   // gen's version: the library is versioned with the generator

#ifdef __cplusplus
extern "C" {
#endif

// Reads the settings (compiled in, or from the device's NVS partition), calls app_setup() and starts WiFi.
void gen_link_start(void);

// One pass: WiFi, clock, MQTT (at most one connect attempt), scheduled publishes, updates, app_loop(). Arduino only;
// on ESP-IDF the link runs in its own task after gen_link_start().
void gen_link_loop(void);

// This device's id (its MQTT client id and, with certificates, its CN).
const char *gen_link_device_id(void);

// Whether the MQTT session is up right now, as this device.
bool gen_link_connected(void);

// Publishes to the topic of the spec's publish entry `name` (its QoS and retain flag). False when there is no such
// entry, the payload is larger than its max_payload, or the session is down. app.h also offers publish_<name>().
bool gen_link_publish(const char *name, const void *payload, size_t length);

// The levels of gen_link_log, numbered as ESP-IDF's esp_log_level_t.
typedef enum {
    GEN_LINK_LOG_ERROR = 1,
    GEN_LINK_LOG_WARN = 2,
    GEN_LINK_LOG_INFO = 3,
    GEN_LINK_LOG_DEBUG = 4,
} gen_link_log_level_t;

#define GEN_LINK_LOG_TEXT_CAPACITY 256   // bytes of one gen_link_log text, its NUL included (a longer one is cut)

// One line of your app's log, printf-style, without a line end (cut to GEN_LINK_LOG_TEXT_CAPACITY - 1 bytes). The serial log shows
// it in ESP-IDF's form, "W (<ms since boot>) app: <text>" (ESP-IDF: through esp_log, so the log level settings of
// the tag "app" apply). With the spec's `log:` it also goes to the device's log topic when it is at log.level or
// more severe, like gen_link's own lines. On Arduino this is the way onto the log topic (Serial.print stays on the
// port); on ESP-IDF your ESP_LOGx lines go there too.
void gen_link_log(gen_link_log_level_t level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif  // GEN_LINK_H
