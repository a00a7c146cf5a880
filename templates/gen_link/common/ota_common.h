// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// What both update handlers share: reading an announcement (a flat JSON object gen ota publish writes) and the
// SHA-256 of a partition's first bytes. Valid C and C++.
#ifndef OTA_COMMON_H
#define OTA_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "esp_partition.h"
#include "gen_ota_config.h"
#include "mbedtls/base64.h"
#include "mbedtls/md.h"
#include "mbedtls/pk.h"
#include "version_order.h"

#define OTA_VERSION_CAPACITY 32      // esp_app_desc_t.version, NUL included
#define OTA_SHA256_HEX 64
// OTA_URL_CAPACITY comes from gen_ota_config.h.
#define OTA_NAME_CAPACITY 64         // target and project names
#define OTA_KEY_CAPACITY 16
// OTA_DOWNGRADE_CAPACITY comes from gen_ota_config.h too.
#define OTA_DOWNGRADE_SIGNATURE_BYTES 384   // RSA-PSS with the RSA-3072 OTA signing key
#define OTA_DOWNGRADE_SALT_BYTES 32         // PSS salt, as gen ota publish makes it (= the SHA-256 length)
#define OTA_DOWNGRADE_MESSAGE_PREFIX "gen-ota-downgrade:v2:"
#define OTA_NOT_AFTER_DIGITS_READ 18       // most digits read (more would not fit an int64_t)
#define OTA_DOWNGRADE_PROBLEM_CAPACITY 128

// {"version": "1.3.0", "size": 1234944, "sha256": "<64 hex digits>", "url": "https://...", "target": "...",
//  "project": "..."}: every key once, nothing else; and "downgrade": "<not after>:<from version>:<base64>" when the
// update is a deliberate downgrade: the permission `gen ota publish --allow-downgrade` signs with the OTA signing key
// for one device and one image, while the device runs <from version>, until <not after> (ota_downgrade_problem
// checks it). downgrade is "" without one.
typedef struct {
    char version[OTA_VERSION_CAPACITY];
    uint32_t size;
    char sha256[OTA_SHA256_HEX + 1];
    char url[OTA_URL_CAPACITY];
    char target[OTA_NAME_CAPACITY];
    char project[OTA_NAME_CAPACITY];
    char downgrade[OTA_DOWNGRADE_CAPACITY];
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

// The downgrade permission: a string, never a bare flag (a `true` proves nothing about who sent it).
static inline const char *ota_read_downgrade(const char **p, const char *end, char *out, size_t capacity)
{
    if (*p >= end || **p != '"') {
        return "downgrade is not a signed permission (gen ota publish --allow-downgrade signs one; a flag is refused)";
    }
    return ota_read_string(p, end, out, capacity);
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
        default: problem = ota_read_downgrade(&p, end, out->downgrade, sizeof out->downgrade); break;
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

// A downgrade permission's parts: "<not after>:<from version>:<base64 signature>" (a version holds no ':').
typedef struct {
    int64_t not_after;                       // Unix seconds, UTC
    const char *not_after_text;              // its digits, as they were signed
    size_t not_after_digits;
    char from_version[OTA_VERSION_CAPACITY]; // the version the device must run for the permission to hold
    const char *signature;                   // base64
} ota_permission_t;

static inline bool ota_split_permission(const char *text, ota_permission_t *out)
{
    const char *p = text;
    out->not_after = 0;
    while (*p >= '0' && *p <= '9' && p - text < OTA_NOT_AFTER_DIGITS_READ) {
        out->not_after = out->not_after * 10 + (*p++ - '0');
    }
    out->not_after_text = text;
    out->not_after_digits = (size_t)(p - text);
    if (out->not_after_digits == 0 || *p++ != ':') {
        return false;
    }
    const char *colon = strchr(p, ':');
    if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof out->from_version) {
        return false;
    }
    memcpy(out->from_version, p, (size_t)(colon - p));
    out->from_version[colon - p] = '\0';
    out->signature = colon + 1;
    return true;
}

// SHA-256 of "gen-ota-downgrade:v2:<device id>:<sha256>:<version>:<from version>:<not after>".
static inline bool ota_permission_hash(const ota_announcement_t *update, const char *device_id,
                                       const ota_permission_t *permission, uint8_t hash[32])
{
    const char *const parts[] = {OTA_DOWNGRADE_MESSAGE_PREFIX, device_id, ":", update->sha256, ":", update->version,
                                 ":", permission->from_version, ":"};
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    bool hashed = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0) == 0
                  && mbedtls_md_starts(&md) == 0;
    for (size_t i = 0; hashed && i < sizeof parts / sizeof parts[0]; ++i) {
        hashed = mbedtls_md_update(&md, (const unsigned char *)parts[i], strlen(parts[i])) == 0;
    }
    hashed = hashed
             && mbedtls_md_update(&md, (const unsigned char *)permission->not_after_text,
                                  permission->not_after_digits) == 0
             && mbedtls_md_finish(&md, hash) == 0;
    mbedtls_md_free(&md);
    return hashed;
}

// NULL when `base64` is the OTA signing key's RSA-PSS (SHA-256, MGF1 SHA-256, 32-byte salt) signature of `hash`.
// The same calls in mbedTLS 2.28 and 3.6.
static inline const char *ota_permission_signature_problem(const uint8_t hash[32], const char *base64)
{
    unsigned char signature[OTA_DOWNGRADE_SIGNATURE_BYTES];
    size_t length = 0;
    if (mbedtls_base64_decode(signature, sizeof signature, &length, (const unsigned char *)base64, strlen(base64)) != 0
        || length != sizeof signature) {
        return "is not a signature (base64 of 384 bytes)";
    }
    mbedtls_pk_context key;
    mbedtls_pk_init(&key);
    // PEM: the length counts the NUL.
    if (mbedtls_pk_parse_public_key(&key, (const unsigned char *)OTA_SIGNING_PUBLIC_KEY_PEM,
                                    sizeof OTA_SIGNING_PUBLIC_KEY_PEM) != 0) {
        mbedtls_pk_free(&key);
        return "cannot be checked (the OTA signing key in gen_ota_config.h does not parse)";
    }
    mbedtls_pk_rsassa_pss_options pss;
    pss.mgf1_hash_id = MBEDTLS_MD_SHA256;
    pss.expected_salt_len = OTA_DOWNGRADE_SALT_BYTES;
    const int verified = mbedtls_pk_verify_ext(MBEDTLS_PK_RSASSA_PSS, &pss, &key, MBEDTLS_MD_SHA256, hash, 32,
                                               signature, sizeof signature);
    mbedtls_pk_free(&key);
    return verified == 0 ? NULL
                         : "does not verify: it was not signed with this project's OTA key for this device and image";
}

static inline void ota_utc_text(int64_t seconds, char out[32])
{
    const time_t moment = (time_t)seconds;
    struct tm utc;
    if (gmtime_r(&moment, &utc) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &utc) == 0) {
        snprintf(out, 32, "%lld s", (long long)seconds);
    }
}

// NULL when update->downgrade is this project's permission for `device_id`, running this firmware's version now, to
// install this very image: `gen ota publish --allow-downgrade` signed it with the OTA signing key for that device,
// image and version, for a device running FIRMWARE_VERSION, until a time this device's clock has not passed. Else
// why not, in words (valid until the next call): a permission in another form (an older gen's), made for a device
// running another version (replayed after the device moved on), expired, or made for another device, image or
// version, or by another key. The cheap checks come first, the RSA verification last.
static inline const char *ota_downgrade_problem(const ota_announcement_t *update, const char *device_id)
{
    static char problem[OTA_DOWNGRADE_PROBLEM_CAPACITY];
    ota_permission_t permission;
    if (!ota_split_permission(update->downgrade, &permission)) {
        return "is not <not after>:<from version>:<signature> (an older gen made it: announce it again with this one)";
    }
    if (strcmp(permission.from_version, FIRMWARE_VERSION) != 0) {
        snprintf(problem, sizeof problem, "holds for a device running %s; this one runs %s", permission.from_version,
                 FIRMWARE_VERSION);
        return problem;
    }
    // The SNTP clock, as the broker certificate's dates are checked against: MQTT, and so any announcement, waits
    // for it.
    const time_t now = time(NULL);
    if ((int64_t)now > permission.not_after) {
        char until[32];
        char now_text[32];
        ota_utc_text(permission.not_after, until);
        ota_utc_text((int64_t)now, now_text);
        snprintf(problem, sizeof problem, "expired at %s; this device's clock says %s", until, now_text);
        return problem;
    }
    uint8_t hash[32];
    if (!ota_permission_hash(update, device_id, &permission, hash)) {
        return "cannot be checked (SHA-256 failed)";
    }
    return ota_permission_signature_problem(hash, permission.signature);
}

// The report `gen ota status` reads, retained on the firmware topic: {"version", "slot", "state", "detail"}, the
// detail made from `format` and `args` (our own text: a quote or backslash in it becomes '). Its length, or 0 when it
// does not fit `capacity` (OTA_REPORT_CAPACITY).
static inline size_t ota_report_json(char *out, size_t capacity, const char *slot, const char *state,
                                     const char *format, va_list args)
{
    char detail[128];
    vsnprintf(detail, sizeof detail, format, args);
    for (char *c = detail; *c != '\0'; ++c) {
        if (*c == '"' || *c == '\\') {
            *c = '\'';
        }
    }
    const int length = snprintf(out, capacity, "{\"version\":\"%s\",\"slot\":\"%s\",\"state\":\"%s\","
                                "\"detail\":\"%s\"}", FIRMWARE_VERSION, slot, state, detail);
    return length < 0 || (size_t)length >= capacity ? 0 : (size_t)length;
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
