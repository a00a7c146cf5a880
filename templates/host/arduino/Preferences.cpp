// Host runtime: Preferences over nvs.h (arduino-esp32 2.0.17 semantics).
#include "Preferences.h"

#include "nvs.h"
#include "nvs_flash.h"

Preferences::~Preferences() { end(); }

bool Preferences::begin(const char* name, bool readOnly, const char* partition_label) {
    if (started_) return false;
    readOnly_ = readOnly;
    nvs_handle_t h;
    esp_err_t err = nvs_open_from_partition(partition_label ? partition_label : NVS_DEFAULT_PART_NAME, name,
                                            readOnly ? NVS_READONLY : NVS_READWRITE, &h);
    if (err) {
        log_e("nvs_open failed: %s", esp_err_to_name(err));
        return false;
    }
    handle_ = h;
    started_ = true;
    return true;
}

void Preferences::end() {
    if (!started_) return;
    nvs_close(handle_);
    started_ = false;
}

bool Preferences::clear() {
    if (!started_ || readOnly_) return false;
    return nvs_erase_all(handle_) == ESP_OK && nvs_commit(handle_) == ESP_OK;
}

bool Preferences::remove(const char* key) {
    if (!started_ || !key || readOnly_) return false;
    return nvs_erase_key(handle_, key) == ESP_OK && nvs_commit(handle_) == ESP_OK;
}

#define PUT_INT(name, ctype, setter)                                             \
    size_t Preferences::name(const char* key, ctype value) {                     \
        if (!started_ || !key || readOnly_) return 0;                            \
        if (setter(handle_, key, value) != ESP_OK) return 0;                     \
        if (nvs_commit(handle_) != ESP_OK) return 0;                             \
        return sizeof(value);                                                    \
    }
PUT_INT(putChar, int8_t, nvs_set_i8)
PUT_INT(putUChar, uint8_t, nvs_set_u8)
PUT_INT(putShort, int16_t, nvs_set_i16)
PUT_INT(putUShort, uint16_t, nvs_set_u16)
PUT_INT(putInt, int32_t, nvs_set_i32)
PUT_INT(putUInt, uint32_t, nvs_set_u32)
PUT_INT(putLong, int32_t, nvs_set_i32)
PUT_INT(putULong, uint32_t, nvs_set_u32)
PUT_INT(putLong64, int64_t, nvs_set_i64)
PUT_INT(putULong64, uint64_t, nvs_set_u64)
#undef PUT_INT

size_t Preferences::putFloat(const char* key, float value) { return putBytes(key, &value, sizeof value); }
size_t Preferences::putDouble(const char* key, double value) { return putBytes(key, &value, sizeof value); }
size_t Preferences::putBool(const char* key, bool value) { return putUChar(key, value ? 1 : 0); }

size_t Preferences::putString(const char* key, const char* value) {
    if (!started_ || !key || !value || readOnly_) return 0;
    if (nvs_set_str(handle_, key, value) != ESP_OK) return 0;
    if (nvs_commit(handle_) != ESP_OK) return 0;
    return strlen(value);
}

size_t Preferences::putString(const char* key, const String value) { return putString(key, value.c_str()); }

size_t Preferences::putBytes(const char* key, const void* value, size_t len) {
    if (!started_ || !key || !value || !len || readOnly_) return 0;
    if (nvs_set_blob(handle_, key, value, len) != ESP_OK) return 0;
    if (nvs_commit(handle_) != ESP_OK) return 0;
    return len;
}

PreferenceType Preferences::getType(const char* key) {
    if (!started_ || !key || strlen(key) > 15) return PT_INVALID;
    nvs_type_t t;
    if (nvs_find_key(handle_, key, &t) != ESP_OK) return PT_INVALID;
    switch (t) {
        case NVS_TYPE_I8: return PT_I8;
        case NVS_TYPE_U8: return PT_U8;
        case NVS_TYPE_I16: return PT_I16;
        case NVS_TYPE_U16: return PT_U16;
        case NVS_TYPE_I32: return PT_I32;
        case NVS_TYPE_U32: return PT_U32;
        case NVS_TYPE_I64: return PT_I64;
        case NVS_TYPE_U64: return PT_U64;
        case NVS_TYPE_STR: return PT_STR;
        case NVS_TYPE_BLOB: return PT_BLOB;
        default: return PT_INVALID;
    }
}

bool Preferences::isKey(const char* key) { return getType(key) != PT_INVALID; }

#define GET_INT(name, ctype, getter)                                             \
    ctype Preferences::name(const char* key, const ctype defaultValue) {         \
        ctype value = defaultValue;                                              \
        if (!started_ || !key) return value;                                     \
        if (getter(handle_, key, &value) != ESP_OK) return defaultValue;         \
        return value;                                                            \
    }
GET_INT(getChar, int8_t, nvs_get_i8)
GET_INT(getUChar, uint8_t, nvs_get_u8)
GET_INT(getShort, int16_t, nvs_get_i16)
GET_INT(getUShort, uint16_t, nvs_get_u16)
GET_INT(getInt, int32_t, nvs_get_i32)
GET_INT(getUInt, uint32_t, nvs_get_u32)
GET_INT(getLong, int32_t, nvs_get_i32)
GET_INT(getULong, uint32_t, nvs_get_u32)
GET_INT(getLong64, int64_t, nvs_get_i64)
GET_INT(getULong64, uint64_t, nvs_get_u64)
#undef GET_INT

bool Preferences::getBool(const char* key, const bool defaultValue) {
    return getUChar(key, defaultValue ? 1 : 0) == 1;
}

float Preferences::getFloat(const char* key, const float defaultValue) {
    float value = defaultValue;
    getBytes(key, &value, sizeof value);
    return value;
}

double Preferences::getDouble(const char* key, const double defaultValue) {
    double value = defaultValue;
    getBytes(key, &value, sizeof value);
    return value;
}

size_t Preferences::getString(const char* key, char* value, const size_t maxLen) {
    size_t len = 0;
    if (!started_ || !key || !value || !maxLen) return 0;
    if (nvs_get_str(handle_, key, nullptr, &len) != ESP_OK) return 0;
    if (len > maxLen) {
        log_e("not enough space in value: %u < %u", static_cast<unsigned>(maxLen), static_cast<unsigned>(len));
        return 0;
    }
    if (nvs_get_str(handle_, key, value, &len) != ESP_OK) return 0;
    return len;
}

String Preferences::getString(const char* key, const String defaultValue) {
    size_t len = 0;
    if (!started_ || !key) return defaultValue;
    if (nvs_get_str(handle_, key, nullptr, &len) != ESP_OK) return defaultValue;
    std::string value(len, '\0');
    if (nvs_get_str(handle_, key, &value[0], &len) != ESP_OK) return defaultValue;
    return String(value.c_str());
}

size_t Preferences::getBytesLength(const char* key) {
    size_t len = 0;
    if (!started_ || !key) return 0;
    if (nvs_get_blob(handle_, key, nullptr, &len) != ESP_OK) return 0;
    return len;
}

size_t Preferences::getBytes(const char* key, void* buf, size_t maxLen) {
    size_t len = getBytesLength(key);
    if (!len || !buf || !maxLen) return len;
    if (len > maxLen) {
        log_e("not enough space in buffer: %u < %u", static_cast<unsigned>(maxLen), static_cast<unsigned>(len));
        return 0;
    }
    if (nvs_get_blob(handle_, key, buf, &len) != ESP_OK) return 0;
    return len;
}

size_t Preferences::freeEntries() { return started_ ? 500 : 0; }
