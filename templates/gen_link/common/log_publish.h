// The device's log over MQTT (the spec's `log:`, read by `gen logs`): the lines the serial log shows, at
// LOG_LEVEL and more severe, published to this device's log topic (QoS 0, not retained). Rate-limited here, on the
// device: a burst of LOG_BURST lines, then LOG_RATE_PER_S a second; the lines over the limit (or over the queue
// while the session is down) are counted and said in a line of their own before the next one that goes out.
// Lines are taken from any task; one taken while another task is queueing is counted as dropped (never waits).
// Valid C and C++; no framework call: each flavour feeds it its serial lines and gives it its publish function.
#ifndef GEN_LINK_LOG_PUBLISH_H
#define GEN_LINK_LOG_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Log levels, as ESP-IDF numbers them (esp_log_level_t): a line is published when its level <= LOG_LEVEL.
enum { LOG_PUBLISH_ERROR = 1, LOG_PUBLISH_WARN = 2, LOG_PUBLISH_INFO = 3, LOG_PUBLISH_DEBUG = 4 };

// Sends one line to `topic` (QoS 0). False when it could not be handed to the MQTT library.
typedef bool (*log_publish_send_t)(const char *topic, const char *line, size_t length);

// The topic from LOG_TOPIC_TEMPLATE with {id} as this device's id. Call once, before lines are taken.
void log_publish_begin(const char *device_id);

// The level of a serial line: ESP-IDF's "E (1234) tag: ..." letter, else LOG_PUBLISH_INFO.
int log_publish_level_of(const char *line, size_t length);

// One line of the serial log (without its line end), at `level`, `now_ms` milliseconds since boot.
void log_publish_take(int level, const char *line, size_t length, uint32_t now_ms);

// Sends the queued lines (the link task, with the session up). Stops at the first one `send` refuses.
void log_publish_flush(log_publish_send_t send);

#ifdef __cplusplus
}
#endif

#endif  // GEN_LINK_LOG_PUBLISH_H
