// Host runtime: the eFuse secure version (esp-idf v5.5.3 components/efuse/src/esp_efuse_fields.c:44-93) of the
// simulated chip. GEN_SIM_EFUSE_SECURE_VERSION names a file holding it in decimal (absent: 0, a blank chip); the
// simulated bootloader (generator/simulate/bootloader.py) reads and raises the same file. The field counts at most
// gen_sim_secure_version_field_bits (CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD of the firmware).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include "esp_efuse.h"
#include "esp_log.h"
#include "gen_sim.h"

namespace {

const char* TAG = "efuse";
std::mutex efuse_mutex;

const char* field_file() {
    const char* path = getenv("GEN_SIM_EFUSE_SECURE_VERSION");
    return path != nullptr && *path != '\0' ? path : nullptr;
}

uint32_t read_field() {
    FILE* f = fopen(field_file(), "r");
    if (f == nullptr) return 0;
    unsigned long value = 0;
    if (fscanf(f, "%lu", &value) != 1) value = 0;
    fclose(f);
    return static_cast<uint32_t>(value);
}

// Written whole and renamed into place, 0600 (the folder of the simulated flash is the device's, 0700).
bool write_field(uint32_t value) {
    const char* path = field_file();
    if (path == nullptr) return true;        // no file named: the eFuse of this run only
    const std::string temporary = std::string(path) + ".tmp";
    const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return false;
    const std::string text = std::to_string(value) + "\n";
    const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return written && rename(temporary.c_str(), path) == 0;
}

uint32_t run_value = 0;      // without a file: what this run burnt

uint32_t current() { return field_file() ? read_field() : run_value; }

}  // namespace

extern "C" {

uint32_t esp_efuse_read_secure_version(void) {
    std::lock_guard<std::mutex> lock(efuse_mutex);
    return current();
}

bool esp_efuse_check_secure_version(uint32_t secure_version) { return secure_version >= esp_efuse_read_secure_version(); }

esp_err_t esp_efuse_update_secure_version(uint32_t secure_version) {
    if (gen_sim_secure_version_field_bits < secure_version) {
        ESP_LOGE(TAG, "Max secure version is %u. Given %u version can not be written.",
                 static_cast<unsigned>(gen_sim_secure_version_field_bits), static_cast<unsigned>(secure_version));
        return ESP_ERR_INVALID_ARG;
    }
    std::lock_guard<std::mutex> lock(efuse_mutex);
    const uint32_t held = current();
    if (held < secure_version) {
        if (!write_field(secure_version)) {
            gen_sim_log("GEN_SIM_EFUSE_SECURE_VERSION: cannot write %s (%s)", field_file(), strerror(errno));
            return ESP_FAIL;
        }
        run_value = secure_version;
        ESP_LOGI(TAG, "Anti-rollback is set. eFuse field is updated(%u).", static_cast<unsigned>(secure_version));
    } else if (held > secure_version) {
        ESP_LOGE(TAG, "Anti-rollback is not set. secure_version of app is lower that eFuse field(%u).",
                 static_cast<unsigned>(held));
        return ESP_FAIL;
    }
    return ESP_OK;
}

}  // extern "C"
