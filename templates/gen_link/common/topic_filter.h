// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// MQTT 3.1.1 topic filter matching (section 4.7): '+' matches one level, '#' the rest (including the parent
// level: "a/#" matches "a"), and wildcards at the first level do not match topics starting with '$'.
// Valid C and C++.
#ifndef TOPIC_FILTER_H
#define TOPIC_FILTER_H

#include <stdbool.h>
#include <string.h>

static inline bool topic_filter_matches(const char* filter, const char* topic) {
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) {
        return false;
    }
    for (;;) {
        if (filter[0] == '#') {
            return true;
        }
        if (filter[0] == '+') {
            ++filter;
            while (*topic != '\0' && *topic != '/') {
                ++topic;
            }
        } else {
            while (*filter != '\0' && *filter != '/') {
                if (*filter != *topic) {
                    return false;
                }
                ++filter;
                ++topic;
            }
            if (*topic != '\0' && *topic != '/') {
                return false;
            }
        }
        /* Both are at the end of a level. */
        if (*filter == '\0') {
            return *topic == '\0';
        }
        if (*topic == '\0') {
            return strcmp(filter, "/#") == 0;
        }
        ++filter;
        ++topic;
    }
}

#endif
