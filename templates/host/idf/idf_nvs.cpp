// Host runtime: nvs_flash and nvs over the store of the device's NVS partitions (nvs_store.h): "nvs" loaded from
// GEN_SIM_NVS, the other NVS partitions of its table (GEN_SIM_NVS_PARTITIONS) empty at first; with
// GEN_SIM_NVS_STATE every write is kept across runs, at the moment it is made.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iterator>
#include <map>
#include <string>

#include "esp_random.h"
#include "gen_sim.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "nvs_sec_provider.h"
#include "nvs_store.h"
#include "nvs_xts.h"

using gen_host::nvs::Contents;
using gen_host::nvs::Store;
using gen_host::nvs::Value;

namespace {

struct OpenHandle {
    std::string partition;
    std::string ns;
    bool writable;
};
std::map<nvs_handle_t, OpenHandle> handles;
nvs_handle_t next_handle = 1;

bool valid_name(const char* s) { return s && *s && strlen(s) < NVS_KEY_NAME_MAX_SIZE; }

// Looks up a key with store.mutex held; nullptr if the handle or key is unknown.
esp_err_t find(nvs_handle_t h, const char* key, Value** out, bool for_write = false) {
    auto it = handles.find(h);
    if (it == handles.end()) return ESP_ERR_NVS_INVALID_HANDLE;
    if (for_write && !it->second.writable) return ESP_ERR_NVS_READ_ONLY;
    if (!key || !*key) return ESP_ERR_NVS_INVALID_NAME;
    if (strlen(key) >= NVS_KEY_NAME_MAX_SIZE) return ESP_ERR_NVS_KEY_TOO_LONG;
    auto& ns = Store::instance().partitions[it->second.partition].contents[it->second.ns];
    if (for_write) {
        *out = &ns[key];
        return ESP_OK;
    }
    auto v = ns.find(key);
    if (v == ns.end()) return ESP_ERR_NVS_NOT_FOUND;
    *out = &v->second;
    return ESP_OK;
}

template <class T>
esp_err_t get_int(nvs_handle_t h, const char* key, T* out, uint8_t type) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    Value* v = nullptr;
    esp_err_t err = find(h, key, &v);
    if (err) return err;
    if (v->type != type) return ESP_ERR_NVS_TYPE_MISMATCH;
    if (!out) return ESP_ERR_INVALID_ARG;
    *out = static_cast<T>(v->integer);
    return ESP_OK;
}

// Every write is on flash when nvs_set_* returns (nvs_commit is a no-op on the device): kept at once.
void persist(nvs_handle_t h, const char* key, const Value* v) {
    const OpenHandle& open = handles[h];
    Store::instance().wrote(open.partition, open.ns, key, v);
}

template <class T>
esp_err_t set_int(nvs_handle_t h, const char* key, T value, uint8_t type) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    Value* v = nullptr;
    esp_err_t err = find(h, key, &v, true);
    if (err) return err;
    v->type = type;
    v->bytes.clear();
    v->integer = static_cast<uint64_t>(static_cast<int64_t>(value));
    if (type == NVS_TYPE_U64) v->integer = static_cast<uint64_t>(value);
    persist(h, key, v);
    return ESP_OK;
}

esp_err_t get_bytes(nvs_handle_t h, const char* key, void* out, size_t* length, uint8_t type) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    Value* v = nullptr;
    esp_err_t err = find(h, key, &v);
    if (err) return err;
    if (v->type != type) return ESP_ERR_NVS_NOT_FOUND;  // the device looks items up by (key, type)
    if (!length) return ESP_ERR_INVALID_ARG;
    size_t size = v->bytes.size();
    if (!out) {
        *length = size;
        return ESP_OK;
    }
    if (*length < size) {
        *length = size;
        return ESP_ERR_NVS_INVALID_LENGTH;
    }
    memcpy(out, v->bytes.data(), size);
    *length = size;
    return ESP_OK;
}

esp_err_t set_bytes(nvs_handle_t h, const char* key, const void* data, size_t len, uint8_t type) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    Value* v = nullptr;
    esp_err_t err = find(h, key, &v, true);
    if (err) return err;
    v->type = type;
    const uint8_t* p = static_cast<const uint8_t*>(data);
    v->bytes.assign(p, p + len);
    persist(h, key, v);
    return ESP_OK;
}

}  // namespace

extern "C" {

esp_err_t nvs_flash_init_partition(const char* label) {
    const std::string name = label ? label : NVS_DEFAULT_PART_NAME;
    if (!Store::exists(name)) return ESP_ERR_NOT_FOUND;
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    std::string message;
    int rc = store.init(name, &message);
    if (!message.empty()) gen_sim_log("%s", message.c_str());
    return rc;
}

esp_err_t nvs_flash_secure_init_partition(const char* label, nvs_sec_cfg_t* cfg) {
    if (!cfg) return ESP_ERR_INVALID_ARG;
    const std::string name = label ? label : NVS_DEFAULT_PART_NAME;
    if (!Store::exists(name)) return ESP_ERR_NOT_FOUND;
    uint8_t keys[2 * NVS_KEY_SIZE];
    memcpy(keys, cfg->eky, NVS_KEY_SIZE);
    memcpy(keys + NVS_KEY_SIZE, cfg->tky, NVS_KEY_SIZE);
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    std::string message;
    int rc = store.init(name, &message, keys);
    if (!message.empty()) gen_sim_log("%s", message.c_str());
    return rc;
}

esp_err_t nvs_flash_secure_init(nvs_sec_cfg_t* cfg) {
    return nvs_flash_secure_init_partition(NVS_DEFAULT_PART_NAME, cfg);
}

// The nvs_keys partition: the file GEN_SIM_NVS_KEYS (as flashed: eky, tky, their CRC32, 0xFF). The checks are the
// device's (components/nvs_flash/src/nvs_api.cpp, nvs_flash_read_security_cfg): all 0xFF is
// ESP_ERR_NVS_KEYS_NOT_INITIALIZED, a CRC that does not match ESP_ERR_NVS_CORRUPT_KEY_PART.
esp_err_t nvs_flash_read_security_cfg(const esp_partition_t* partition, nvs_sec_cfg_t* cfg) {
    if (!cfg || !partition) return ESP_ERR_INVALID_ARG;
    uint8_t raw[2 * NVS_KEY_SIZE + 4];
    memset(raw, 0xff, sizeof raw);
    const char* path = getenv("GEN_SIM_NVS_KEYS");
    FILE* f = path && *path ? fopen(path, "rb") : nullptr;
    if (f) {
        size_t got = fread(raw, 1, sizeof raw, f);
        (void)got;
        fclose(f);
    }
    bool blank = true;
    for (uint8_t byte : raw) blank = blank && byte == 0xff;
    if (blank) return ESP_ERR_NVS_KEYS_NOT_INITIALIZED;
    uint32_t crc = (uint32_t)raw[64] | ((uint32_t)raw[65] << 8) | ((uint32_t)raw[66] << 16) | ((uint32_t)raw[67] << 24);
    if (gen_host::nvs::keys_crc32(raw, 2 * NVS_KEY_SIZE) != crc) return ESP_ERR_NVS_CORRUPT_KEY_PART;
    memcpy(cfg->eky, raw, NVS_KEY_SIZE);
    memcpy(cfg->tky, raw + NVS_KEY_SIZE, NVS_KEY_SIZE);
    return ESP_OK;
}

// The nvs_keys partition of the flash encryption scheme (nvs_sec_provider.h's NVS_SEC_PROVIDER_CFG_FLASH_ENC_DEFAULT):
// read from GEN_SIM_NVS_KEYS by nvs_flash_read_security_cfg above.
const esp_partition_t* gen_sim_nvs_keys_partition(void) {
    static const esp_partition_t keys_partition = {nullptr, ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_NVS_KEYS,
                                                   0, 0x1000, 0x1000, "nvs_keys", true, false};
    return &keys_partition;
}

// New keys for the nvs_keys partition, as nvs_flash_generate_keys does (on the device it then writes them to the
// partition, encrypted by flash encryption; here they are not written back).
esp_err_t nvs_flash_generate_keys(const esp_partition_t* partition, nvs_sec_cfg_t* cfg) {
    if (!cfg || !partition) return ESP_ERR_INVALID_ARG;
    esp_fill_random(cfg->eky, NVS_KEY_SIZE);
    esp_fill_random(cfg->tky, NVS_KEY_SIZE);
    return ESP_OK;
}

// The default scheme (esp-idf v5.5.3 components/nvs_flash/src/nvs_api.cpp:728-758).
static nvs_sec_scheme_t nvs_sec_default_scheme_cfg;

esp_err_t nvs_flash_register_security_scheme(nvs_sec_scheme_t* scheme_cfg) {
    if (scheme_cfg == nullptr) return ESP_ERR_INVALID_ARG;
    memcpy(&nvs_sec_default_scheme_cfg, scheme_cfg, sizeof(nvs_sec_scheme_t));
    return ESP_OK;
}

nvs_sec_scheme_t* nvs_flash_get_default_security_scheme(void) { return &nvs_sec_default_scheme_cfg; }

esp_err_t nvs_flash_generate_keys_v2(nvs_sec_scheme_t* scheme_cfg, nvs_sec_cfg_t* cfg) {
    if (scheme_cfg == nullptr || cfg == nullptr || scheme_cfg->nvs_flash_key_gen == nullptr) {
        return ESP_ERR_INVALID_ARG;
    }
    return (scheme_cfg->nvs_flash_key_gen)(scheme_cfg->scheme_data, cfg);
}

esp_err_t nvs_flash_read_security_cfg_v2(nvs_sec_scheme_t* scheme_cfg, nvs_sec_cfg_t* cfg) {
    if (scheme_cfg == nullptr || cfg == nullptr || scheme_cfg->nvs_flash_read_cfg == nullptr) {
        return ESP_ERR_INVALID_ARG;
    }
    return (scheme_cfg->nvs_flash_read_cfg)(scheme_cfg->scheme_data, cfg);
}

// As esp-idf v5.5.3 nvs_flash_init() with CONFIG_NVS_ENCRYPTION (gen_sim_nvs_encryption, set from the app's
// sdkconfig; nvs_api.cpp:136-163): the keys through the registered scheme (our main() registers it, as the device's
// ESP_SYSTEM_INIT_FN does); none there: the scheme generates new ones (random keys for nvs_keys; a random HMAC key
// burned into the configured eFuse block), with which an image made for other keys, or a plain one, reads as empty.
esp_err_t nvs_flash_init(void) {
    if (!gen_sim_nvs_encryption) return nvs_flash_init_partition(NVS_DEFAULT_PART_NAME);
    nvs_sec_cfg_t cfg = {};
    esp_err_t ret = nvs_flash_read_security_cfg_v2(&nvs_sec_default_scheme_cfg, &cfg);
    if (ret != ESP_OK) {
        gen_sim_log("nvs: Failed to read NVS security cfg: [0x%02X]; generating NVS encr-keys", (unsigned)ret);
        ret = nvs_flash_generate_keys_v2(&nvs_sec_default_scheme_cfg, &cfg);
        if (ret != ESP_OK) {
            gen_sim_log("nvs: Failed to generate NVS encr-keys: [0x%02X]", (unsigned)ret);
            return ret;
        }
    }
    ret = nvs_flash_secure_init(&cfg);
    if (ret == ESP_ERR_NVS_NO_FREE_PAGES || ret == ESP_ERR_NVS_NEW_VERSION_FOUND) return ret;
    gen_sim_log("nvs: NVS partition \"%s\" is encrypted.", NVS_DEFAULT_PART_NAME);
    return ret;
}

esp_err_t nvs_flash_deinit(void) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    store.partitions[NVS_DEFAULT_PART_NAME].initialized = false;
    for (auto it = handles.begin(); it != handles.end();) {
        it = it->second.partition == NVS_DEFAULT_PART_NAME ? handles.erase(it) : std::next(it);
    }
    return ESP_OK;
}

esp_err_t nvs_flash_erase_partition(const char* label) {
    const std::string name = label ? label : NVS_DEFAULT_PART_NAME;
    if (!Store::exists(name)) return ESP_ERR_NOT_FOUND;
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    store.erase(name);
    for (auto it = handles.begin(); it != handles.end();) {
        it = it->second.partition == name ? handles.erase(it) : std::next(it);
    }
    return ESP_OK;
}

esp_err_t nvs_flash_erase(void) { return nvs_flash_erase_partition(NVS_DEFAULT_PART_NAME); }

esp_err_t nvs_open_from_partition(const char* part, const char* ns, nvs_open_mode_t mode, nvs_handle_t* out) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    const std::string name = part ? part : NVS_DEFAULT_PART_NAME;
    auto partition = store.partitions.find(name);
    if (!Store::exists(name)) return ESP_ERR_NVS_PART_NOT_FOUND;
    if (partition == store.partitions.end() || !partition->second.initialized) return ESP_ERR_NVS_NOT_INITIALIZED;
    if (!out) return ESP_ERR_INVALID_ARG;
    if (!valid_name(ns)) return ESP_ERR_NVS_INVALID_NAME;
    Contents& contents = partition->second.contents;
    if (!contents.count(ns)) {
        if (mode == NVS_READONLY) return ESP_ERR_NVS_NOT_FOUND;
        contents[ns];
    }
    nvs_handle_t h = next_handle++;
    handles[h] = OpenHandle{name, ns, mode == NVS_READWRITE};
    *out = h;
    return ESP_OK;
}

esp_err_t nvs_open(const char* ns, nvs_open_mode_t mode, nvs_handle_t* out) {
    return nvs_open_from_partition(NVS_DEFAULT_PART_NAME, ns, mode, out);
}

void nvs_close(nvs_handle_t h) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    handles.erase(h);
}

esp_err_t nvs_commit(nvs_handle_t h) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    return handles.count(h) ? ESP_OK : ESP_ERR_NVS_INVALID_HANDLE;
}

esp_err_t nvs_erase_key(nvs_handle_t h, const char* key) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    auto it = handles.find(h);
    if (it == handles.end()) return ESP_ERR_NVS_INVALID_HANDLE;
    if (!it->second.writable) return ESP_ERR_NVS_READ_ONLY;
    if (!store.partitions[it->second.partition].contents[it->second.ns].erase(key)) return ESP_ERR_NVS_NOT_FOUND;
    store.wrote(it->second.partition, it->second.ns, key, nullptr);
    return ESP_OK;
}

esp_err_t nvs_erase_all(nvs_handle_t h) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    auto it = handles.find(h);
    if (it == handles.end()) return ESP_ERR_NVS_INVALID_HANDLE;
    if (!it->second.writable) return ESP_ERR_NVS_READ_ONLY;
    store.partitions[it->second.partition].contents[it->second.ns].clear();
    store.erased_namespace(it->second.partition, it->second.ns);
    return ESP_OK;
}

esp_err_t nvs_find_key(nvs_handle_t h, const char* key, nvs_type_t* out_type) {
    Store& store = Store::instance();
    std::lock_guard<std::mutex> lock(store.mutex);
    Value* v = nullptr;
    esp_err_t err = find(h, key, &v);
    if (err) return err;
    if (out_type) *out_type = static_cast<nvs_type_t>(v->type);
    return ESP_OK;
}

esp_err_t nvs_get_i8(nvs_handle_t h, const char* k, int8_t* o) { return get_int(h, k, o, NVS_TYPE_I8); }
esp_err_t nvs_get_u8(nvs_handle_t h, const char* k, uint8_t* o) { return get_int(h, k, o, NVS_TYPE_U8); }
esp_err_t nvs_get_i16(nvs_handle_t h, const char* k, int16_t* o) { return get_int(h, k, o, NVS_TYPE_I16); }
esp_err_t nvs_get_u16(nvs_handle_t h, const char* k, uint16_t* o) { return get_int(h, k, o, NVS_TYPE_U16); }
esp_err_t nvs_get_i32(nvs_handle_t h, const char* k, int32_t* o) { return get_int(h, k, o, NVS_TYPE_I32); }
esp_err_t nvs_get_u32(nvs_handle_t h, const char* k, uint32_t* o) { return get_int(h, k, o, NVS_TYPE_U32); }
esp_err_t nvs_get_i64(nvs_handle_t h, const char* k, int64_t* o) { return get_int(h, k, o, NVS_TYPE_I64); }
esp_err_t nvs_get_u64(nvs_handle_t h, const char* k, uint64_t* o) { return get_int(h, k, o, NVS_TYPE_U64); }
esp_err_t nvs_get_str(nvs_handle_t h, const char* k, char* o, size_t* len) { return get_bytes(h, k, o, len, NVS_TYPE_STR); }
esp_err_t nvs_get_blob(nvs_handle_t h, const char* k, void* o, size_t* len) { return get_bytes(h, k, o, len, NVS_TYPE_BLOB); }

esp_err_t nvs_set_i8(nvs_handle_t h, const char* k, int8_t v) { return set_int(h, k, v, NVS_TYPE_I8); }
esp_err_t nvs_set_u8(nvs_handle_t h, const char* k, uint8_t v) { return set_int(h, k, v, NVS_TYPE_U8); }
esp_err_t nvs_set_i16(nvs_handle_t h, const char* k, int16_t v) { return set_int(h, k, v, NVS_TYPE_I16); }
esp_err_t nvs_set_u16(nvs_handle_t h, const char* k, uint16_t v) { return set_int(h, k, v, NVS_TYPE_U16); }
esp_err_t nvs_set_i32(nvs_handle_t h, const char* k, int32_t v) { return set_int(h, k, v, NVS_TYPE_I32); }
esp_err_t nvs_set_u32(nvs_handle_t h, const char* k, uint32_t v) { return set_int(h, k, v, NVS_TYPE_U32); }
esp_err_t nvs_set_i64(nvs_handle_t h, const char* k, int64_t v) { return set_int(h, k, v, NVS_TYPE_I64); }
esp_err_t nvs_set_u64(nvs_handle_t h, const char* k, uint64_t v) { return set_int(h, k, v, NVS_TYPE_U64); }
esp_err_t nvs_set_str(nvs_handle_t h, const char* k, const char* v) {
    if (!v) return ESP_ERR_INVALID_ARG;
    size_t len = strlen(v) + 1;
    if (len > 4000) return ESP_ERR_NVS_VALUE_TOO_LONG;
    return set_bytes(h, k, v, len, NVS_TYPE_STR);
}
esp_err_t nvs_set_blob(nvs_handle_t h, const char* k, const void* v, size_t len) {
    if (!v && len) return ESP_ERR_INVALID_ARG;
    return set_bytes(h, k, v, len, NVS_TYPE_BLOB);
}

}  // extern "C"
