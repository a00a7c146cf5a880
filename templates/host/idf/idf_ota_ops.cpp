// Host runtime: esp_ota_ops (esp-idf v5.5.3 components/app_update/esp_ota_ops.c) and esp_app_get_description over
// the partition imitation. The otadata rules are the real ones: two entries, one per sector of the otadata
// partition; the active one is the valid entry with the higher sequence number; a slot is (seq - 1) % app count;
// esp_ota_set_boot_partition writes the next sequence number into the other entry, NEW when
// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE is set. The running partition is the one GEN_SIM_BOOT_SLOT names: the slot
// the simulated bootloader started, which the chip's MMU would report. With CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
// (gen_sim_app_anti_rollback) the images' secure_version meets the eFuse (esp_efuse.h): an image below it is erased
// instead of becoming the boot partition, is no rollback target, and confirming the running image raises the eFuse
// to its secure_version (esp_ota_ops.c:619-634, 833-843, 848-899, 918-921).
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "esp_app_desc.h"
#include "esp_app_format.h"
#include "esp_efuse.h"
#include "esp_ota_ops.h"
#include "esp_system.h"
#include "gen_app_image.h"
#include "gen_sim.h"

namespace {

const uint32_t APP_DESC_OFFSET = sizeof(esp_image_header_t) + sizeof(esp_image_segment_header_t);

struct Update {
    esp_ota_handle_t handle;
    const esp_partition_t* partition;
    uint32_t wrote_size;
    bool need_erase;
};

std::mutex ota_mutex;
std::vector<Update> updates;
esp_ota_handle_t last_handle = 0;

bool is_ota_partition(const esp_partition_t* p) {
    return p != nullptr && p->type == ESP_PARTITION_TYPE_APP && p->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_0 &&
           p->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX;
}

uint32_t select_crc(const esp_ota_select_entry_t* s) {
    return gen_host::crc32_le(UINT32_MAX, reinterpret_cast<const uint8_t*>(&s->ota_seq), 4);
}

bool select_invalid(const esp_ota_select_entry_t* s) {
    return s->ota_seq == UINT32_MAX || s->ota_state == ESP_OTA_IMG_INVALID || s->ota_state == ESP_OTA_IMG_ABORTED;
}

bool select_valid(const esp_ota_select_entry_t* s) { return !select_invalid(s) && s->crc == select_crc(s); }

int select_otadata(const esp_ota_select_entry_t two[2], const bool valid[2], bool max) {
    if (valid[0] && valid[1]) {
        const uint32_t chosen = max ? std::max(two[0].ota_seq, two[1].ota_seq) : std::min(two[0].ota_seq, two[1].ota_seq);
        return chosen == two[0].ota_seq ? 0 : 1;
    }
    for (int i = 0; i < 2; ++i) {
        if (valid[i]) return i;
    }
    return -1;
}

int active_otadata(const esp_ota_select_entry_t two[2]) {
    const bool valid[2] = {select_valid(&two[0]), select_valid(&two[1])};
    return select_otadata(two, valid, true);
}

const esp_partition_t* read_otadata(esp_ota_select_entry_t two[2]) {
    const esp_partition_t* p = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_OTA, nullptr);
    if (p == nullptr) return nullptr;
    if (esp_partition_read(p, 0, &two[0], sizeof two[0]) != ESP_OK ||
        esp_partition_read(p, p->erase_size, &two[1], sizeof two[1]) != ESP_OK) {
        return nullptr;
    }
    return p;
}

esp_err_t rewrite_ota_seq(esp_ota_select_entry_t two[2], uint32_t seq, int sector, const esp_partition_t* otadata) {
    two[sector].ota_seq = seq;
    two[sector].crc = select_crc(&two[sector]);
    esp_err_t err = esp_partition_erase_range(otadata, sector * otadata->erase_size, otadata->erase_size);
    return err != ESP_OK ? err : esp_partition_write(otadata, otadata->erase_size * sector, &two[sector], sizeof two[sector]);
}

const esp_partition_t* slot_partition(uint32_t seq, uint8_t app_count) {
    const int slot = static_cast<int>((seq - 1) % app_count);
    return esp_partition_find_first(ESP_PARTITION_TYPE_APP,
                                    static_cast<esp_partition_subtype_t>(ESP_PARTITION_SUBTYPE_APP_OTA_MIN + slot), nullptr);
}

esp_err_t image_validate(const esp_partition_t* partition) {
    std::string why;
    if (gen_host::verify_app_image(partition, gen_sim_signed_on_update, nullptr, &why) != ESP_OK) {
        gen_sim_log("esp_image: %s (%s)", why.c_str(), partition->label);
        return ESP_ERR_OTA_VALIDATE_FAILED;
    }
    return ESP_OK;
}

// erase_last_boot_app_partition(true): forget the other entry, so that an image being written there cannot be
// booted by a stale sequence number.
void invalidate_inactive_ota_data_slot() {
    esp_ota_select_entry_t two[2];
    const esp_partition_t* otadata = read_otadata(two);
    const int active = otadata ? active_otadata(two) : -1;
    const uint8_t count = esp_ota_get_app_partition_count();
    if (active == -1 || count == 0) return;
    const int inactive = (~active) & 1;
    if (two[inactive].ota_seq == UINT32_MAX || two[inactive].crc != select_crc(&two[inactive])) return;
    if (slot_partition(two[inactive].ota_seq, count) == esp_ota_get_running_partition()) return;
    esp_partition_erase_range(otadata, inactive * otadata->erase_size, otadata->erase_size);
}

Update* find_update(esp_ota_handle_t handle) {
    for (auto& update : updates) {
        if (update.handle == handle) return &update;
    }
    return nullptr;
}

void forget_update(esp_ota_handle_t handle) {
    for (auto it = updates.begin(); it != updates.end(); ++it) {
        if (it->handle == handle) {
            updates.erase(it);
            return;
        }
    }
}

// esp_ota_set_anti_rollback: the eFuse raised to the running image's secure_version.
esp_err_t set_anti_rollback() {
    esp_app_desc_t description;
    memset(&description, 0, sizeof description);
    esp_err_t err = esp_ota_get_partition_description(esp_ota_get_running_partition(), &description);
    return err == ESP_OK ? esp_efuse_update_secure_version(description.secure_version) : err;
}

// Whether the image in `p` is one the eFuse lets boot (always, without CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK).
bool passes_anti_rollback(const esp_partition_t* p) {
    if (!gen_sim_app_anti_rollback) return true;
    esp_app_desc_t description;
    return esp_ota_get_partition_description(p, &description) == ESP_OK &&
           esp_efuse_check_secure_version(description.secure_version);
}

esp_err_t current_ota_is_workable(bool valid) {
    esp_ota_select_entry_t two[2];
    const esp_partition_t* otadata = read_otadata(two);
    if (otadata == nullptr) return ESP_ERR_NOT_FOUND;
    const int active = active_otadata(two);
    if (active == -1 || esp_ota_get_app_partition_count() == 0) {
        gen_sim_log("esp_ota_ops: Running firmware is factory");
        return ESP_FAIL;
    }
    if (valid && two[active].ota_state != ESP_OTA_IMG_VALID) {
        two[active].ota_state = ESP_OTA_IMG_VALID;
        esp_err_t err = rewrite_ota_seq(two, two[active].ota_seq, active, otadata);
        return err == ESP_OK && gen_sim_app_anti_rollback ? set_anti_rollback() : err;
    }
    if (!valid) {
        if (!esp_ota_check_rollback_is_possible()) {
            gen_sim_log("esp_ota_ops: Rollback is not possible, do not have any suitable apps in slots");
            return ESP_ERR_OTA_ROLLBACK_FAILED;
        }
        two[active].ota_state = ESP_OTA_IMG_INVALID;
        esp_err_t err = rewrite_ota_seq(two, two[active].ota_seq, active, otadata);
        if (err != ESP_OK) return err;
        gen_sim_log("esp_ota_ops: Rollback to previously worked partition.");
    }
    return ESP_OK;
}

}  // namespace

extern "C" {

uint8_t esp_ota_get_app_partition_count(void) {
    uint8_t count = 0;
    while (esp_partition_find_first(ESP_PARTITION_TYPE_APP,
                                    static_cast<esp_partition_subtype_t>(ESP_PARTITION_SUBTYPE_APP_OTA_MIN + count),
                                    nullptr) != nullptr) {
        ++count;
    }
    return count;
}

const esp_partition_t* esp_ota_get_running_partition(void) {
    static const esp_partition_t* running = [] {
        const char* slot = getenv("GEN_SIM_BOOT_SLOT");
        const esp_partition_t* p = slot ? esp_partition_find_first(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_ANY, slot)
                                        : nullptr;
        const char* flash = getenv("GEN_SIM_FLASH");
        if (p == nullptr && (flash == nullptr || *flash == '\0')) {
            return p;          // no flash at all (GEN_SIM_FLASH unset): nothing runs from a partition
        }
        if (p == nullptr) {
            gen_sim_log("esp_ota_get_running_partition: no app partition %s%s in the partition table of GEN_SIM_FLASH "
                        "(the simulated bootloader sets GEN_SIM_BOOT_SLOT)", slot ? "named " : "", slot ? slot : "");
            gen_sim_exit(1);   // the chip would abort(): the partition table does not match the running image
        }
        return p;
    }();
    return running;
}

const esp_partition_t* esp_ota_get_next_update_partition(const esp_partition_t* start_from) {
    start_from = start_from == nullptr ? esp_ota_get_running_partition() : esp_partition_verify(start_from);
    const esp_partition_t* default_ota = nullptr;
    bool next_is_result = false;
    for (int t = ESP_PARTITION_SUBTYPE_APP_OTA_0; t != ESP_PARTITION_SUBTYPE_APP_OTA_MAX; ++t) {
        const esp_partition_t* p =
            esp_partition_find_first(ESP_PARTITION_TYPE_APP, static_cast<esp_partition_subtype_t>(t), nullptr);
        if (p == nullptr) continue;
        if (default_ota == nullptr) default_ota = p;
        if (p == start_from) {
            next_is_result = true;
        } else if (next_is_result) {
            return p;
        }
    }
    return default_ota;
}

esp_err_t esp_ota_begin(const esp_partition_t* partition, size_t image_size, esp_ota_handle_t* out_handle) {
    if (partition == nullptr || out_handle == nullptr) return ESP_ERR_INVALID_ARG;
    partition = esp_partition_verify(partition);
    if (partition == nullptr) return ESP_ERR_NOT_FOUND;
    if (!is_ota_partition(partition)) return ESP_ERR_INVALID_ARG;
    const esp_partition_t* running = esp_ota_get_running_partition();
    if (partition == running) return ESP_ERR_OTA_PARTITION_CONFLICT;
    if (gen_sim_app_rollback_enable) {
        esp_ota_img_states_t state;
        if (esp_ota_get_state_partition(running, &state) == ESP_OK && state == ESP_OTA_IMG_PENDING_VERIFY) {
            gen_sim_log("esp_ota_ops: Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)");
            return ESP_ERR_OTA_ROLLBACK_INVALID_STATE;
        }
    }
    if (image_size != OTA_WITH_SEQUENTIAL_WRITES) {
        const size_t erase = (image_size == 0 || image_size == OTA_SIZE_UNKNOWN)
                                 ? partition->size
                                 : (image_size + partition->erase_size - 1) / partition->erase_size * partition->erase_size;
        esp_err_t err = esp_partition_erase_range(partition, 0, erase);
        if (err != ESP_OK) return err;
    }
    if (gen_sim_app_rollback_enable) invalidate_inactive_ota_data_slot();
    std::lock_guard<std::mutex> lock(ota_mutex);
    updates.push_back({++last_handle, partition, 0, image_size == OTA_WITH_SEQUENTIAL_WRITES});
    *out_handle = last_handle;
    return ESP_OK;
}

esp_err_t esp_ota_write(esp_ota_handle_t handle, const void* data, size_t size) {
    if (data == nullptr) return ESP_ERR_INVALID_ARG;
    if (size == 0) return ESP_OK;
    std::lock_guard<std::mutex> lock(ota_mutex);
    Update* it = find_update(handle);
    if (it == nullptr) return ESP_ERR_INVALID_ARG;
    const esp_partition_t* p = it->partition;
    if (it->need_erase) {
        const uint32_t first = it->wrote_size / p->erase_size, last = (it->wrote_size + size - 1) / p->erase_size;
        esp_err_t err = ESP_OK;
        if (it->wrote_size % p->erase_size == 0) {
            err = esp_partition_erase_range(p, it->wrote_size, (last - first + 1) * p->erase_size);
        } else if (first != last) {
            err = esp_partition_erase_range(p, (first + 1) * p->erase_size, (last - first) * p->erase_size);
        }
        if (err != ESP_OK) return err;
    }
    if (it->wrote_size == 0 && static_cast<const uint8_t*>(data)[0] != ESP_IMAGE_HEADER_MAGIC) {
        gen_sim_log("esp_ota_ops: OTA image has invalid magic byte (expected 0xE9, saw 0x%02x)",
                    static_cast<const uint8_t*>(data)[0]);
        return ESP_ERR_OTA_VALIDATE_FAILED;
    }
    esp_err_t err = esp_partition_write(p, it->wrote_size, data, size);
    if (err == ESP_OK) it->wrote_size += size;
    return err;
}

esp_err_t esp_ota_end(esp_ota_handle_t handle) {
    const esp_partition_t* partition;
    uint32_t wrote;
    {
        std::lock_guard<std::mutex> lock(ota_mutex);
        Update* it = find_update(handle);
        if (it == nullptr) return ESP_ERR_NOT_FOUND;
        partition = it->partition;
        wrote = it->wrote_size;
        forget_update(handle);
    }
    if (wrote == 0) return ESP_ERR_INVALID_ARG;
    if (image_validate(partition) != ESP_OK) {
        gen_sim_log("esp_ota_ops: New image failed verification");
        return ESP_ERR_OTA_VALIDATE_FAILED;
    }
    return ESP_OK;
}

esp_err_t esp_ota_abort(esp_ota_handle_t handle) {
    std::lock_guard<std::mutex> lock(ota_mutex);
    if (find_update(handle) == nullptr) return ESP_ERR_NOT_FOUND;
    forget_update(handle);
    return ESP_OK;
}

esp_err_t esp_ota_set_boot_partition(const esp_partition_t* partition) {
    if (partition == nullptr) return ESP_ERR_INVALID_ARG;
    if (image_validate(partition) != ESP_OK) return ESP_ERR_OTA_VALIDATE_FAILED;
    if (partition->type != ESP_PARTITION_TYPE_APP) return ESP_ERR_INVALID_ARG;
    const esp_partition_t* otadata = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_OTA, nullptr);
    if (partition->subtype == ESP_PARTITION_SUBTYPE_APP_FACTORY) {
        return otadata ? esp_partition_erase_range(otadata, 0, otadata->size) : ESP_ERR_NOT_FOUND;
    }
    if (!passes_anti_rollback(partition)) {
        esp_app_desc_t description;
        esp_err_t err = esp_ota_get_partition_description(partition, &description);
        if (err != ESP_OK) return err;
        gen_sim_log("esp_ota_ops: This a new partition can not be booted due to a secure version is lower than stored "
                    "in efuse. Partition will be erased.");
        err = esp_partition_erase_range(partition, 0, partition->size);
        return err != ESP_OK ? err : ESP_ERR_OTA_SMALL_SEC_VER;
    }
    esp_ota_select_entry_t two[2];
    if (read_otadata(two) == nullptr) return ESP_ERR_NOT_FOUND;
    const uint8_t count = esp_ota_get_app_partition_count();
    const uint32_t id = partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN;
    if (id >= count) return ESP_ERR_INVALID_ARG;
    const uint32_t state = gen_sim_app_rollback_enable ? ESP_OTA_IMG_NEW : ESP_OTA_IMG_UNDEFINED;
    const int active = active_otadata(two);
    if (active == -1) {          // both entries invalid: the flash was just written by USB
        two[0].ota_state = state;
        return rewrite_ota_seq(two, id + 1, 0, otadata);
    }
    uint32_t i = 0;
    while (two[active].ota_seq > (id + 1) % count + i * count) ++i;
    const int next = (~active) & 1;
    two[next].ota_state = state;
    return rewrite_ota_seq(two, (id + 1) % count + i * count, next, otadata);
}

const esp_partition_t* esp_ota_get_boot_partition(void) {
    esp_ota_select_entry_t two[2];
    if (read_otadata(two) == nullptr) return nullptr;
    const uint8_t count = esp_ota_get_app_partition_count();
    const int active = active_otadata(two);
    if (count == 0 || active == -1) {
        return esp_partition_find_first(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_0, nullptr);
    }
    return slot_partition(two[active].ota_seq, count);
}

esp_err_t esp_ota_get_partition_description(const esp_partition_t* partition, esp_app_desc_t* app_desc) {
    if (partition == nullptr || app_desc == nullptr) return ESP_ERR_INVALID_ARG;
    if (partition->type != ESP_PARTITION_TYPE_APP) return ESP_ERR_NOT_SUPPORTED;
    esp_err_t err = esp_partition_read(partition, APP_DESC_OFFSET, app_desc, sizeof *app_desc);
    if (err != ESP_OK) return err;
    return app_desc->magic_word == ESP_APP_DESC_MAGIC_WORD ? ESP_OK : ESP_ERR_NOT_FOUND;
}

esp_err_t esp_ota_mark_app_valid_cancel_rollback(void) { return current_ota_is_workable(true); }

esp_err_t esp_ota_mark_app_invalid_rollback(void) { return current_ota_is_workable(false); }

esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void) {
    esp_err_t err = esp_ota_mark_app_invalid_rollback();
    if (err == ESP_OK) esp_restart();
    return err;
}

bool esp_ota_check_rollback_is_possible(void) {
    esp_ota_select_entry_t two[2];
    if (read_otadata(two) == nullptr) return false;
    const uint8_t count = esp_ota_get_app_partition_count();
    if (count == 0) return false;
    const bool valid[2] = {select_valid(&two[0]), select_valid(&two[1])};
    const int active = select_otadata(two, valid, true);
    if (active == -1) return false;
    const int last = (~active) & 1;
    std::string why;
    if (!valid[last]) {      // the factory app is no rollback target with anti-rollback
        const esp_partition_t* factory =
            esp_partition_find_first(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_FACTORY, nullptr);
        return !gen_sim_app_anti_rollback && factory != nullptr &&
               gen_host::verify_app_image(factory, gen_sim_signed_on_update, nullptr, &why) == ESP_OK;
    }
    const esp_partition_t* p = slot_partition(two[last].ota_seq, count);
    return p != nullptr && gen_host::verify_app_image(p, gen_sim_signed_on_update, nullptr, &why) == ESP_OK &&
           passes_anti_rollback(p);
}

const esp_partition_t* esp_ota_get_last_invalid_partition(void) {
    esp_ota_select_entry_t two[2];
    if (read_otadata(two) == nullptr) return nullptr;
    bool invalid[2];
    for (int i = 0; i < 2; ++i) {
        invalid[i] = two[i].ota_seq != UINT32_MAX && two[i].crc == select_crc(&two[i]) &&
                     (two[i].ota_state == ESP_OTA_IMG_INVALID || two[i].ota_state == ESP_OTA_IMG_ABORTED);
    }
    const int index = select_otadata(two, invalid, false);
    const uint8_t count = esp_ota_get_app_partition_count();
    if (index == -1 || count == 0) return nullptr;
    const esp_partition_t* p = slot_partition(two[index].ota_seq, count);
    std::string why;
    if (p != nullptr && gen_host::verify_app_image(p, gen_sim_signed_on_update, nullptr, &why) != ESP_OK) return nullptr;
    return p;
}

esp_err_t esp_ota_get_state_partition(const esp_partition_t* partition, esp_ota_img_states_t* ota_state) {
    if (partition == nullptr || ota_state == nullptr) return ESP_ERR_INVALID_ARG;
    if (!is_ota_partition(partition)) return ESP_ERR_NOT_SUPPORTED;
    esp_ota_select_entry_t two[2];
    const uint8_t count = esp_ota_get_app_partition_count();
    if (read_otadata(two) == nullptr || count == 0) return ESP_ERR_NOT_FOUND;
    const int wanted = partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN;
    for (int i = 0; i < 2; ++i) {
        const int slot = static_cast<int>((two[i].ota_seq - 1) % count);
        if (slot == wanted && two[i].crc == select_crc(&two[i])) {
            *ota_state = static_cast<esp_ota_img_states_t>(two[i].ota_state);
            return ESP_OK;
        }
    }
    return ESP_ERR_NOT_FOUND;
}

const esp_app_desc_t* esp_app_get_description(void) {
    static esp_app_desc_t description = [] {
        esp_app_desc_t d;
        memset(&d, 0, sizeof d);
        if (esp_ota_get_partition_description(esp_ota_get_running_partition(), &d) != ESP_OK) {
            gen_sim_log("esp_app_get_description: the running image has no esp_app_desc_t");
        }
        return d;
    }();
    return &description;
}

}  // extern "C"
