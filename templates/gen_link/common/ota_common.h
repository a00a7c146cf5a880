// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// What both update handlers share: reading an announcement (a flat JSON object gen ota publish writes) and the
// SHA-256 of a partition's first bytes. Valid C and C++.
#ifndef OTA_COMMON_H
#define OTA_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "esp_partition.h"
#include "gen_ota_config.h"
#include "mbedtls/md.h"
#include "version_order.h"

#define OTA_VERSION_CAPACITY 32      // esp_app_desc_t.version, NUL included
#define OTA_SHA256_HEX 64
// OTA_URL_CAPACITY comes from gen_ota_config.h.
#define OTA_NAME_CAPACITY 64         // target and project names
#define OTA_KEY_CAPACITY 16

// {"version": "1.3.0", "size": 1234944, "sha256": "<64 hex digits>", "url": "https://...", "target": "...",
//  "project": "..."}: every key once, nothing else; and "downgrade": true when the update is a deliberate downgrade
// (only `gen ota publish --allow-downgrade` writes it).
typedef struct {
    char version[OTA_VERSION_CAPACITY];
    uint32_t size;
    char sha256[OTA_SHA256_HEX + 1];
    char url[OTA_URL_CAPACITY];
    char target[OTA_NAME_CAPACITY];
    char project[OTA_NAME_CAPACITY];
    bool downgrade;
} ota_announcement_t;

static inline const char *ota_skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        ++p;
    }
    return p;
}

// A JSON string at *p into out; the only escapes gen writes (\" \\ \/) are accepted, no control characters.
static inline const char *ota_read_string(const char **p, const char *end, char *out, size_t capacity)
{
    const char *s = *p;
    if (s >= end || *s != '"') {
        return "a string was expected";
    }
    size_t n = 0;
    for (++s; s < end && *s != '"'; ++s) {
        char c = *s;
        if (c == '\\') {
            if (++s >= end || (*s != '"' && *s != '\\' && *s != '/')) {
                return "it uses an escape other than \\\" \\\\ \\/";
            }
            c = *s;
        } else if ((unsigned char)c < 0x20) {
            return "a string holds a control character";
        }
        if (n + 1 >= capacity) {
            return "a string is longer than this firmware holds";
        }
        out[n++] = c;
    }
    if (s >= end) {
        return "a string is not terminated";
    }
    out[n] = '\0';
    *p = s + 1;
    return NULL;
}

static inline const char *ota_read_size(const char **p, const char *end, uint32_t *out)
{
    const char *s = *p;
    uint64_t value = 0;
    size_t digits = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        value = value * 10 + (uint64_t)(*s - '0');
        if (++digits > 10 || value > UINT32_MAX) {
            return "size is not a 32-bit number";
        }
        ++s;
    }
    if (digits == 0 || value == 0) {
        return "size is not a positive number";
    }
    *out = (uint32_t)value;
    *p = s;
    return NULL;
}

static inline const char *ota_read_boolean(const char **p, const char *end, bool *out)
{
    const char *s = *p;
    if (end - s >= 4 && memcmp(s, "true", 4) == 0) {
        *out = true;
        *p = s + 4;
        return NULL;
    }
    if (end - s >= 5 && memcmp(s, "false", 5) == 0) {
        *out = false;
        *p = s + 5;
        return NULL;
    }
    return "downgrade is not true or false";
}

// NULL when json[0..length) is a complete announcement (then in *out), else why not, in words.
static inline const char *ota_parse_announcement(const char *json, size_t length, ota_announcement_t *out)
{
    static const char *const keys[] = {"version", "size", "sha256", "url", "target", "project", "downgrade"};
    const unsigned required = (1u << 6) - 1;     // all but downgrade
    const char *end = json + length;
    const char *p = ota_skip_space(json, end);
    unsigned seen = 0;
    memset(out, 0, sizeof *out);
    if (p >= end || *p++ != '{') {
        return "it is not a JSON object";
    }
    for (;;) {
        char key[OTA_KEY_CAPACITY];
        p = ota_skip_space(p, end);
        const char *problem = ota_read_string(&p, end, key, sizeof key);
        if (problem != NULL) {
            return problem;
        }
        unsigned index = 0;
        while (index < sizeof keys / sizeof keys[0] && strcmp(key, keys[index]) != 0) {
            ++index;
        }
        if (index == sizeof keys / sizeof keys[0]) {
            return "it has a key that is not version, size, sha256, url, target, project or downgrade";
        }
        if (seen & (1u << index)) {
            return "a key appears twice";
        }
        seen |= 1u << index;
        p = ota_skip_space(p, end);
        if (p >= end || *p++ != ':') {
            return "a ':' is missing";
        }
        p = ota_skip_space(p, end);
        switch (index) {
        case 0: problem = ota_read_string(&p, end, out->version, sizeof out->version); break;
        case 1: problem = ota_read_size(&p, end, &out->size); break;
        case 2: problem = ota_read_string(&p, end, out->sha256, sizeof out->sha256); break;
        case 3: problem = ota_read_string(&p, end, out->url, sizeof out->url); break;
        case 4: problem = ota_read_string(&p, end, out->target, sizeof out->target); break;
        case 5: problem = ota_read_string(&p, end, out->project, sizeof out->project); break;
        default: problem = ota_read_boolean(&p, end, &out->downgrade); break;
        }
        if (problem != NULL) {
            return problem;
        }
        p = ota_skip_space(p, end);
        if (p < end && *p == ',') {
            ++p;
            continue;
        }
        if (p < end && *p == '}') {
            ++p;
            break;
        }
        return "a ',' or '}' is missing";
    }
    if (ota_skip_space(p, end) != end) {
        return "there is text after the object";
    }
    if ((seen & required) != required) {
        return "a key is missing (version, size, sha256, url, target and project are all needed)";
    }
    if (strlen(out->sha256) != OTA_SHA256_HEX || strspn(out->sha256, "0123456789abcdef") != OTA_SHA256_HEX) {
        return "sha256 is not 64 lowercase hex digits";
    }
    return NULL;
}

static inline void ota_hex(const uint8_t *bytes, size_t count, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < count; ++i) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
    out[2 * count] = '\0';
}

// SHA-256 of the first `length` bytes of a partition, as 64 hex digits in out[65]; false when it cannot be read.
static inline bool ota_partition_sha256(const esp_partition_t *partition, uint32_t length, char *out)
{
    static uint8_t chunk[4096];
    uint8_t digest[32];
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    bool ok = length <= partition->size
              && mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0) == 0
              && mbedtls_md_starts(&md) == 0;
    for (uint32_t offset = 0; ok && offset < length; offset += sizeof chunk) {
        const size_t n = length - offset < sizeof chunk ? length - offset : sizeof chunk;
        ok = esp_partition_read(partition, offset, chunk, n) == ESP_OK && mbedtls_md_update(&md, chunk, n) == 0;
    }
    ok = ok && mbedtls_md_finish(&md, digest) == 0;
    mbedtls_md_free(&md);
    if (ok) {
        ota_hex(digest, sizeof digest, out);
    }
    return ok;
}

#endif
