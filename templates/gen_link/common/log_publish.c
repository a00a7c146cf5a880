// The device's log over MQTT: see log_publish.h.
#include "log_publish.h"

#include "gen_config.h"

#if GEN_LINK_LOG

#include <stdio.h>
#include <string.h>

#define LOG_QUEUE_LINES (LOG_BURST + 1)   // a burst, and the line that says how many were dropped

static char topic[LOG_TOPIC_CAPACITY];
static char queue[LOG_QUEUE_LINES][LOG_LINE_CAPACITY];
static size_t queue_length[LOG_QUEUE_LINES];
static size_t queue_head;                 // the oldest queued line
static size_t queue_count;
static uint32_t dropped;                  // lines not published since the last that was
static uint32_t tokens_ms = LOG_BURST * 1000u;   // the rate limit's bucket, in line-milliseconds
static uint32_t refilled_at_ms;
// The queue's guard, taken with GCC's atomic builtins (the ESP toolchains are GCC; no task ever waits on it).
static bool busy;
static uint32_t dropped_while_busy;       // lines that found the queue busy (or failed to send): added to dropped

static bool try_take(void)
{
    return !__atomic_test_and_set(&busy, __ATOMIC_ACQUIRE);
}

static void give(void)
{
    __atomic_clear(&busy, __ATOMIC_RELEASE);
}

void log_publish_begin(const char *device_id)
{
    static const char placeholder[] = "{id}";
    const char *from = LOG_TOPIC_TEMPLATE;
    size_t used = 0;
    while (*from != '\0' && used + 1 < sizeof topic) {
        if (strncmp(from, placeholder, sizeof placeholder - 1) == 0) {
            size_t id_length = strlen(device_id);
            if (used + id_length + 1 > sizeof topic) {
                break;
            }
            memcpy(topic + used, device_id, id_length);
            used += id_length;
            from += sizeof placeholder - 1;
        } else {
            topic[used++] = *from++;
        }
    }
    topic[used] = '\0';
}

int log_publish_level_of(const char *line, size_t length)
{
    if (length >= 2 && line[0] == '\033' && line[1] == '[') {   // CONFIG_LOG_COLORS: "\033[0;31mE (..."
        const char *end = memchr(line, 'm', length);
        if (end != NULL) {
            length -= (size_t)(end + 1 - line);
            line = end + 1;
        }
    }
    if (length >= 3 && line[1] == ' ' && line[2] == '(') {
        switch (line[0]) {
        case 'E': return LOG_PUBLISH_ERROR;
        case 'W': return LOG_PUBLISH_WARN;
        case 'I': return LOG_PUBLISH_INFO;
        case 'D': return LOG_PUBLISH_DEBUG;
        case 'V': return LOG_PUBLISH_DEBUG + 1;
        default: break;
        }
    }
    return LOG_PUBLISH_INFO;
}

static void enqueue(const char *line, size_t length)
{
    size_t slot = (queue_head + queue_count) % LOG_QUEUE_LINES;
    if (length > LOG_LINE_CAPACITY) {
        length = LOG_LINE_CAPACITY;   // a longer line is cut: the serial port still shows all of it
    }
    memcpy(queue[slot], line, length);
    queue_length[slot] = length;
    queue_count++;
}

void log_publish_take(int level, const char *line, size_t length, uint32_t now_ms)
{
    if (level > LOG_LEVEL || length == 0 || topic[0] == '\0') {
        return;
    }
    if (!try_take()) {
        __atomic_fetch_add(&dropped_while_busy, 1u, __ATOMIC_RELAXED);   // another task is queueing: never wait
        return;
    }
    dropped += __atomic_exchange_n(&dropped_while_busy, 0u, __ATOMIC_RELAXED);
    uint32_t elapsed = now_ms - refilled_at_ms;
    refilled_at_ms = now_ms;
    uint32_t refill = elapsed > LOG_BURST * 1000u ? LOG_BURST * 1000u : elapsed * LOG_RATE_PER_S;
    tokens_ms = tokens_ms + refill > LOG_BURST * 1000u ? LOG_BURST * 1000u : tokens_ms + refill;
    if (tokens_ms < 1000u || queue_count + (dropped > 0 ? 2u : 1u) > LOG_QUEUE_LINES) {
        dropped++;
    } else {
        tokens_ms -= 1000u;
        if (dropped > 0) {
            char said[LOG_LINE_CAPACITY];
            int n = snprintf(said, sizeof said, "[log] %lu lines dropped (over the log's rate of %u lines/s "
                             "or while offline)", (unsigned long)dropped, (unsigned)LOG_RATE_PER_S);
            enqueue(said, n > 0 ? (size_t)n : 0u);
            dropped = 0;
        }
        enqueue(line, length);
    }
    give();
}

void log_publish_flush(log_publish_send_t send)
{
    char line[LOG_LINE_CAPACITY];
    for (;;) {
        if (!try_take()) {
            return;   // a line is being queued right now: the next pass sends it
        }
        size_t length = 0;
        bool any = queue_count > 0;
        if (any) {
            length = queue_length[queue_head];
            memcpy(line, queue[queue_head], length);
            queue_head = (queue_head + 1) % LOG_QUEUE_LINES;
            queue_count--;
        }
        give();
        // Sent outside the flag: the MQTT library may log (into log_publish_take) while it publishes.
        if (!any) {
            return;
        }
        if (!send(topic, line, length)) {
            __atomic_fetch_add(&dropped_while_busy, 1u, __ATOMIC_RELAXED);
            return;
        }
    }
}

#endif  // GEN_LINK_LOG
