// Host runtime: esp_partition over the flash file GEN_SIM_FLASH, laid out as on the chip. The partition table is
// read from 0x8000 (ESP_PARTITION_TABLE_OFFSET) in its binary format (esp_partition_info_t entries, the MD5 entry);
// writes only clear bits, as NOR flash does, and erases set whole sectors to 0xFF.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "esp_flash_partitions.h"
#include "esp_partition.h"
#include "gen_sim.h"

namespace {

const uint32_t SECTOR = 4096;

struct Flash {
    int fd = -1;
    off_t size = 0;
    std::vector<esp_partition_t> partitions;
};

std::mutex flash_mutex;

Flash& flash() {
    static Flash* loaded = [] {
        Flash* f = new Flash;
        const char* path = getenv("GEN_SIM_FLASH");
        if (path == nullptr || *path == '\0') {
            return f;                  // no flash: every lookup finds nothing (firmware without OTA never looks)
        }
        f->fd = open(path, O_RDWR | O_CLOEXEC);
        if (f->fd < 0) {
            gen_sim_log("GEN_SIM_FLASH=%s cannot be opened: %s", path, strerror(errno));
            return f;
        }
        f->size = lseek(f->fd, 0, SEEK_END);
        uint8_t table[ESP_PARTITION_TABLE_MAX_LEN];
        if (pread(f->fd, table, sizeof table, ESP_PARTITION_TABLE_OFFSET) != static_cast<ssize_t>(sizeof table)) {
            gen_sim_log("GEN_SIM_FLASH=%s has no partition table at 0x%x", path, ESP_PARTITION_TABLE_OFFSET);
            return f;
        }
        for (size_t at = 0; at + 32 <= sizeof table; at += 32) {
            uint16_t magic;
            memcpy(&magic, table + at, 2);
            if (magic != ESP_PARTITION_MAGIC) break;   // the MD5 entry (0xEBEB) or the end (0xFFFF)
            esp_partition_t p;
            memset(&p, 0, sizeof p);
            p.type = static_cast<esp_partition_type_t>(table[at + 2]);
            p.subtype = static_cast<esp_partition_subtype_t>(table[at + 3]);
            memcpy(&p.address, table + at + 4, 4);
            memcpy(&p.size, table + at + 8, 4);
            memcpy(p.label, table + at + 12, 16);
            p.erase_size = SECTOR;
            uint32_t flags;
            memcpy(&flags, table + at + 28, 4);
            p.encrypted = (flags & 1) != 0;
            p.readonly = (flags & 2) != 0;
            f->partitions.push_back(p);
        }
        return f;
    }();
    return *loaded;
}

bool matches(const esp_partition_t& p, esp_partition_type_t type, esp_partition_subtype_t subtype,
             const char* label) {
    return (type == ESP_PARTITION_TYPE_ANY || p.type == type) &&
           (subtype == ESP_PARTITION_SUBTYPE_ANY || p.subtype == subtype) &&
           (label == nullptr || strncmp(p.label, label, sizeof p.label) == 0);
}

struct Iterator {
    esp_partition_type_t type;
    esp_partition_subtype_t subtype;
    const char* label;
    size_t index;
};

esp_err_t check_range(const esp_partition_t* p, size_t offset, size_t size) {
    if (p == nullptr) return ESP_ERR_INVALID_ARG;
    if (offset > p->size || size > p->size - offset) return ESP_ERR_INVALID_SIZE;
    if (flash().fd < 0 || p->address + offset + size > static_cast<uint64_t>(flash().size)) return ESP_FAIL;
    return ESP_OK;
}

}  // namespace

struct esp_partition_iterator_opaque_ : Iterator {};

extern "C" {

esp_partition_iterator_t esp_partition_find(esp_partition_type_t type, esp_partition_subtype_t subtype,
                                            const char* label) {
    auto* it = new esp_partition_iterator_opaque_{{type, subtype, label, 0}};
    const auto& all = flash().partitions;
    while (it->index < all.size() && !matches(all[it->index], type, subtype, label)) ++it->index;
    if (it->index == all.size()) {
        delete it;
        return nullptr;
    }
    return it;
}

const esp_partition_t* esp_partition_get(esp_partition_iterator_t iterator) {
    return iterator ? &flash().partitions[iterator->index] : nullptr;
}

esp_partition_iterator_t esp_partition_next(esp_partition_iterator_t iterator) {
    const auto& all = flash().partitions;
    for (++iterator->index; iterator->index < all.size(); ++iterator->index) {
        if (matches(all[iterator->index], iterator->type, iterator->subtype, iterator->label)) return iterator;
    }
    delete iterator;
    return nullptr;
}

void esp_partition_iterator_release(esp_partition_iterator_t iterator) { delete iterator; }

const esp_partition_t* esp_partition_find_first(esp_partition_type_t type, esp_partition_subtype_t subtype,
                                                const char* label) {
    for (const auto& p : flash().partitions) {
        if (matches(p, type, subtype, label)) return &p;
    }
    return nullptr;
}

const esp_partition_t* esp_partition_verify(const esp_partition_t* partition) {
    for (const auto& p : flash().partitions) {
        if (partition != nullptr && p.address == partition->address && p.size == partition->size &&
            p.type == partition->type && p.subtype == partition->subtype) {
            return &p;
        }
    }
    return nullptr;
}

esp_err_t esp_partition_read(const esp_partition_t* partition, size_t src_offset, void* dst, size_t size) {
    esp_err_t err = check_range(partition, src_offset, size);
    if (err != ESP_OK) return err;
    std::lock_guard<std::mutex> lock(flash_mutex);
    return pread(flash().fd, dst, size, partition->address + src_offset) == static_cast<ssize_t>(size) ? ESP_OK
                                                                                                       : ESP_FAIL;
}

esp_err_t esp_partition_write(const esp_partition_t* partition, size_t dst_offset, const void* src, size_t size) {
    esp_err_t err = check_range(partition, dst_offset, size);
    if (err != ESP_OK) return err;
    if (partition->readonly) return ESP_ERR_NOT_ALLOWED;
    std::lock_guard<std::mutex> lock(flash_mutex);
    std::vector<uint8_t> current(size);
    const off_t at = partition->address + dst_offset;
    if (pread(flash().fd, current.data(), size, at) != static_cast<ssize_t>(size)) return ESP_FAIL;
    const uint8_t* bytes = static_cast<const uint8_t*>(src);
    for (size_t i = 0; i < size; ++i) current[i] &= bytes[i];   // NOR flash: a write only clears bits
    return pwrite(flash().fd, current.data(), size, at) == static_cast<ssize_t>(size) ? ESP_OK : ESP_FAIL;
}

esp_err_t esp_partition_erase_range(const esp_partition_t* partition, size_t offset, size_t size) {
    esp_err_t err = check_range(partition, offset, size);
    if (err != ESP_OK) return err;
    if (offset % SECTOR != 0 || size % SECTOR != 0) return ESP_ERR_INVALID_SIZE;
    if (partition->readonly) return ESP_ERR_NOT_ALLOWED;
    std::lock_guard<std::mutex> lock(flash_mutex);
    std::vector<uint8_t> erased(SECTOR, 0xFF);
    for (size_t done = 0; done < size; done += SECTOR) {
        if (pwrite(flash().fd, erased.data(), SECTOR, partition->address + offset + done) != SECTOR) return ESP_FAIL;
    }
    return ESP_OK;
}

}  // extern "C"
