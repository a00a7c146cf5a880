// Host runtime: nvs_sec_provider (the schemes that protect the NVS encryption keys), the HMAC peripheral and the
// eFuse key blocks it reads, as esp-idf v5.5.3 components/nvs_sec_provider/nvs_sec_provider.c does on the chip.
//
// The eFuse: GEN_SIM_EFUSE_HMAC_UP_KEY=<n>:<file> is key block BLOCK_KEY<n> holding the 32-byte key of <file> with
// purpose HMAC_UP (what `gen flash` burns); every other block is empty. A key the device burns itself (its first
// nvs_flash_init with an empty block) stays in memory for the run.
#define SOC_HMAC_SUPPORTED 1   // the runtime serves every chip; the app's headers declare the HMAC API where it exists

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>

#include <mutex>

#include "esp_hmac.h"
#include "esp_random.h"
#include "gen_sim.h"
#include "nvs_flash.h"
#include "nvs_sec_provider.h"

namespace {

// include/private/nvs_sec_provider_private.h:7-8
const uint32_t EKEY_SEED = 0xAEBE5A5A;
const uint32_t TKEY_SEED = 0xCEDEA5A5;
const int KEY_BLOCKS = 6;
const size_t KEY_BYTES = 32;

enum class Purpose { User, HmacUp };

struct KeyBlock {
    Purpose purpose = Purpose::User;
    bool written = false;
    uint8_t key[KEY_BYTES] = {};
};

std::mutex efuse_mutex;

KeyBlock* efuse_blocks() {
    static KeyBlock* blocks = [] {
        KeyBlock* loaded = new KeyBlock[KEY_BLOCKS];
        const char* spec = getenv("GEN_SIM_EFUSE_HMAC_UP_KEY");
        if (spec == nullptr || *spec == '\0') return loaded;
        const char* colon = strchr(spec, ':');
        int block = colon ? atoi(spec) : -1;
        if (block < 0 || block >= KEY_BLOCKS) {
            gen_sim_log("GEN_SIM_EFUSE_HMAC_UP_KEY=%s is not <block 0-5>:<key file>", spec);
            return loaded;
        }
        FILE* f = fopen(colon + 1, "rb");
        uint8_t key[KEY_BYTES + 1];
        size_t got = f ? fread(key, 1, sizeof key, f) : 0;
        if (f) fclose(f);
        if (got != KEY_BYTES) {
            gen_sim_log("GEN_SIM_EFUSE_HMAC_UP_KEY: %s is not a 32-byte key", colon + 1);
            return loaded;
        }
        memcpy(loaded[block].key, key, KEY_BYTES);
        loaded[block].written = true;
        loaded[block].purpose = Purpose::HmacUp;
        return loaded;
    }();
    return blocks;
}

// esp_efuse_get_key_purpose(EFUSE_BLK_KEY0 + id) == ESP_EFUSE_KEY_PURPOSE_HMAC_UP (nvs_sec_provider.c:142-154)
bool is_hmac_key_burnt_in_efuse(hmac_key_id_t id) {
    std::lock_guard<std::mutex> lock(efuse_mutex);
    return static_cast<int>(id) < KEY_BLOCKS && efuse_blocks()[id].purpose == Purpose::HmacUp;
}

// esp_efuse_write_key(block, ESP_EFUSE_KEY_PURPOSE_HMAC_UP, key): a block already written is
// ESP_ERR_NVS_SEC_HMAC_KEY_BLK_ALREADY_USED for nvs_sec_provider (nvs_sec_provider.c:181-189).
esp_err_t burn_hmac_key(hmac_key_id_t id, const uint8_t* key) {
    std::lock_guard<std::mutex> lock(efuse_mutex);
    KeyBlock& block = efuse_blocks()[id];
    if (block.written) return ESP_ERR_NVS_SEC_HMAC_KEY_BLK_ALREADY_USED;
    memcpy(block.key, key, KEY_BYTES);
    block.written = true;
    block.purpose = Purpose::HmacUp;
    return ESP_OK;
}

esp_err_t compute_nvs_keys_with_hmac(hmac_key_id_t id, nvs_sec_cfg_t* cfg) {
    uint32_t ekey_seed[8], tkey_seed[8];
    for (int i = 0; i < 8; i++) {
        ekey_seed[i] = EKEY_SEED;
        tkey_seed[i] = TKEY_SEED;
    }
    esp_err_t err = esp_hmac_calculate(id, ekey_seed, sizeof ekey_seed, cfg->eky);
    if (err == ESP_OK) err = esp_hmac_calculate(id, tkey_seed, sizeof tkey_seed, cfg->tky);
    if (err != ESP_OK) gen_sim_log("nvs_sec_provider: Failed to calculate seed HMAC: [0x%02X]", (unsigned)err);
    return err;
}

esp_err_t generate_keys_hmac(const void* scheme_cfg, nvs_sec_cfg_t* cfg) {
    if (cfg == nullptr) return ESP_ERR_INVALID_ARG;
    hmac_key_id_t id = static_cast<const nvs_sec_config_hmac_t*>(scheme_cfg)->hmac_key_id;
    if (id >= HMAC_KEY_MAX) return ESP_ERR_INVALID_ARG;
    if (!is_hmac_key_burnt_in_efuse(id)) {
        uint8_t key[KEY_BYTES];
        esp_fill_random(key, sizeof key);
        esp_err_t err = burn_hmac_key(id, key);
        memset(key, 0, sizeof key);
        if (err != ESP_OK) {
            gen_sim_log("nvs_sec_provider: Configured eFuse block for HMAC key already-in-use!");
            return err;
        }
    }
    return compute_nvs_keys_with_hmac(id, cfg) == ESP_OK ? ESP_OK : ESP_ERR_NVS_SEC_HMAC_XTS_KEYS_DERIV_FAILED;
}

esp_err_t read_security_cfg_hmac(const void* scheme_cfg, nvs_sec_cfg_t* cfg) {
    if (cfg == nullptr) return ESP_ERR_INVALID_ARG;
    hmac_key_id_t id = static_cast<const nvs_sec_config_hmac_t*>(scheme_cfg)->hmac_key_id;
    if (id >= HMAC_KEY_MAX) return ESP_ERR_INVALID_ARG;
    if (!is_hmac_key_burnt_in_efuse(id)) {
        gen_sim_log("nvs_sec_provider: Could not find HMAC key in configured eFuse block!");
        return ESP_ERR_NVS_SEC_HMAC_KEY_NOT_FOUND;
    }
    return compute_nvs_keys_with_hmac(id, cfg) == ESP_OK ? ESP_OK : ESP_ERR_NVS_SEC_HMAC_XTS_KEYS_DERIV_FAILED;
}

esp_err_t generate_keys_flash_enc(const void* scheme_cfg, nvs_sec_cfg_t* cfg) {
    if (scheme_cfg == nullptr || cfg == nullptr) return ESP_ERR_INVALID_ARG;
    return nvs_flash_generate_keys(static_cast<const nvs_sec_config_flash_enc_t*>(scheme_cfg)->nvs_keys_part, cfg);
}

esp_err_t read_security_cfg_flash_enc(const void* scheme_cfg, nvs_sec_cfg_t* cfg) {
    if (scheme_cfg == nullptr || cfg == nullptr) return ESP_ERR_INVALID_ARG;
    return nvs_flash_read_security_cfg(static_cast<const nvs_sec_config_flash_enc_t*>(scheme_cfg)->nvs_keys_part,
                                       cfg);
}

template <typename Config>
esp_err_t register_scheme(int id, const Config* config, nvs_flash_generate_keys_t generate, nvs_flash_read_cfg_t read,
                          nvs_sec_scheme_t** out) {
    if (config == nullptr || out == nullptr) return ESP_ERR_INVALID_ARG;
    nvs_sec_scheme_t* scheme = static_cast<nvs_sec_scheme_t*>(calloc(1, sizeof(nvs_sec_scheme_t)));
    if (scheme == nullptr) return ESP_ERR_NO_MEM;
    scheme->scheme_id = id;
    scheme->nvs_flash_key_gen = generate;
    scheme->nvs_flash_read_cfg = read;
    scheme->scheme_data = calloc(1, sizeof(Config));
    if (scheme->scheme_data == nullptr) {
        free(scheme);
        return ESP_ERR_NO_MEM;
    }
    memcpy(scheme->scheme_data, config, sizeof(Config));
    esp_err_t err = nvs_flash_register_security_scheme(scheme);
    if (err != ESP_OK) {
        free(scheme->scheme_data);
        free(scheme);
        return err;
    }
    *out = scheme;
    return ESP_OK;
}

}  // namespace

extern "C" {

// The HMAC peripheral, upstream mode: HMAC-SHA256 with the key of the block, which must have purpose HMAC_UP (the
// chip reports a configuration error otherwise: ESP_FAIL).
esp_err_t esp_hmac_calculate(hmac_key_id_t key_id, const void* message, size_t message_len, uint8_t* hmac) {
    if (message == nullptr || hmac == nullptr || key_id >= HMAC_KEY_MAX) return ESP_ERR_INVALID_ARG;
    uint8_t key[KEY_BYTES];
    {
        std::lock_guard<std::mutex> lock(efuse_mutex);
        if (static_cast<int>(key_id) >= KEY_BLOCKS || efuse_blocks()[key_id].purpose != Purpose::HmacUp) {
            return ESP_FAIL;
        }
        memcpy(key, efuse_blocks()[key_id].key, KEY_BYTES);
    }
    int rc = mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, KEY_BYTES,
                             static_cast<const unsigned char*>(message), message_len, hmac);
    memset(key, 0, sizeof key);
    return rc == 0 ? ESP_OK : ESP_FAIL;
}

esp_err_t nvs_sec_provider_register_flash_enc(const nvs_sec_config_flash_enc_t* sec_scheme_cfg,
                                              nvs_sec_scheme_t** sec_scheme_handle_out) {
    return register_scheme(NVS_SEC_SCHEME_FLASH_ENC, sec_scheme_cfg, &generate_keys_flash_enc,
                           &read_security_cfg_flash_enc, sec_scheme_handle_out);
}

esp_err_t nvs_sec_provider_register_hmac(const nvs_sec_config_hmac_t* sec_scheme_cfg,
                                         nvs_sec_scheme_t** sec_scheme_handle_out) {
    return register_scheme(NVS_SEC_SCHEME_HMAC, sec_scheme_cfg, &generate_keys_hmac, &read_security_cfg_hmac,
                           sec_scheme_handle_out);
}

esp_err_t nvs_sec_provider_deregister(nvs_sec_scheme_t* sec_scheme_handle) {
    if (sec_scheme_handle == nullptr) return ESP_ERR_INVALID_ARG;
    free(sec_scheme_handle->scheme_data);
    free(sec_scheme_handle);
    return ESP_OK;
}

}  // extern "C"
