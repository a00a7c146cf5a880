// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// The firmware version inside a signed Arduino image. ESP-IDF reads an image's version from its esp_app_desc_t,
// but under Arduino-ESP32 2.0.17 that struct comes precompiled with the core (its version is the core's build, not
// this firmware's). So the firmware carries a record of its own in .rodata: 8 bytes "gen.ver", the version (32
// bytes, NUL-terminated), 8 bytes "rev.neg". The signature covers it, so once an image's signature verifies, the
// record in it says truly which version it is. gen ota publish reads the same record (generator/ota/image.py).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "esp_partition.h"

#define OTA_VERSION_RECORD_MAGIC 8
#define OTA_VERSION_RECORD_TEXT 32

struct OtaVersionRecord {
    char begin[OTA_VERSION_RECORD_MAGIC];     // "gen.ver"
    char version[OTA_VERSION_RECORD_TEXT];
    char end[OTA_VERSION_RECORD_MAGIC];       // "rev.neg"
};

// The version in the record at `at`, if the bytes there are one (markers as in `own`, a version of [0-9A-Za-z.+_-]).
inline bool ota_version_record_at(const uint8_t* at, const char (&begin)[OTA_VERSION_RECORD_MAGIC],
                                  const char (&end)[OTA_VERSION_RECORD_MAGIC]) {
    if (memcmp(at, begin, sizeof begin) != 0 ||
        memcmp(at + offsetof(OtaVersionRecord, end), end, sizeof end) != 0) {
        return false;
    }
    const char* version = reinterpret_cast<const char*>(at + offsetof(OtaVersionRecord, version));
    const size_t length = strnlen(version, OTA_VERSION_RECORD_TEXT);
    return length > 0 && length < OTA_VERSION_RECORD_TEXT &&
           strspn(version, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+_-") == length;
}

// The version recorded in the first `length` bytes of `partition` (a downloaded image) into out; false unless
// there is exactly one record. The markers are read from this firmware's own record through a volatile pointer, so
// the compiler cannot fold them into constants elsewhere in the image.
inline bool ota_image_version(const esp_partition_t* partition, uint32_t length, const OtaVersionRecord& own,
                              char (&out)[OTA_VERSION_RECORD_TEXT]) {
    char begin[OTA_VERSION_RECORD_MAGIC], end[OTA_VERSION_RECORD_MAGIC];
    const volatile char* own_begin = own.begin;
    const volatile char* own_end = own.end;
    for (size_t i = 0; i < OTA_VERSION_RECORD_MAGIC; ++i) {
        begin[i] = own_begin[i];
        end[i] = own_end[i];
    }
    const size_t record = sizeof(OtaVersionRecord);
    static uint8_t window[4096 + sizeof(OtaVersionRecord) - 1];
    size_t carried = 0;
    unsigned found = 0;
    for (uint32_t offset = 0; offset < length;) {
        const size_t n = length - offset < 4096 ? length - offset : 4096;
        if (esp_partition_read(partition, offset, window + carried, n) != ESP_OK) {
            return false;
        }
        offset += static_cast<uint32_t>(n);
        const size_t have = carried + n;
        for (size_t i = 0; i + record <= have; ++i) {
            if (ota_version_record_at(window + i, begin, end)) {
                if (++found > 1) {
                    return false;
                }
                memcpy(out, window + i + offsetof(OtaVersionRecord, version), sizeof out);
            }
        }
        carried = have < record - 1 ? have : record - 1;
        memmove(window, window + have - carried, carried);
    }
    return found == 1;
}
