#include "nvs_store.h"
#include "nvs_xts.h"

#include "nvs_journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <tuple>

namespace gen_host {
namespace nvs {

namespace {

const size_t PAGE_SIZE = 4096;
const size_t ENTRY_SIZE = 32;
const size_t ENTRIES_PER_PAGE = 126;
const size_t FIRST_ENTRY_OFFSET = 64;
const uint32_t PAGE_ACTIVE = 0xFFFFFFFE;
const uint32_t PAGE_FULL = 0xFFFFFFFC;
const uint8_t ENTRY_WRITTEN = 2;

uint32_t crc32_le(uint32_t init, const uint8_t* data, size_t len) {
    static uint32_t table[256];
    static bool ready = false;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    uint32_t c = ~init;
    for (size_t i = 0; i < len; i++) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return ~c;
}

uint32_t u32le(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint16_t u16le(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

uint32_t entry_crc(const uint8_t* e) {
    uint8_t buf[28];
    memcpy(buf, e, 4);
    memcpy(buf + 4, e + 8, 24);
    return crc32_le(0xFFFFFFFF, buf, sizeof buf);
}

uint8_t entry_state(const uint8_t* page, size_t index) {
    return (page[32 + index / 4] >> ((index % 4) * 2)) & 0x3;
}

std::string entry_key(const uint8_t* e) {
    const char* k = reinterpret_cast<const char*>(e + 8);
    return std::string(k, strnlen(k, 16));
}

struct RawEntry {
    uint8_t ns;
    uint8_t type;
    uint8_t chunk;
    std::string key;
    const uint8_t* entry;
    std::vector<uint8_t> data;  // variable-length payload (SZ, BLOB_DATA)
};

}  // namespace

bool parse_image(const uint8_t* data, size_t len, Contents* out, std::string* error) {
    if (len < PAGE_SIZE || len % PAGE_SIZE) {
        *error = "the size is not a multiple of the 4096-byte NVS page";
        return false;
    }
    // Pages in sequence order (the order the device wrote them).
    std::vector<std::pair<uint32_t, const uint8_t*>> pages;
    for (size_t off = 0; off < len; off += PAGE_SIZE) {
        const uint8_t* p = data + off;
        uint32_t state = u32le(p);
        if (state != PAGE_ACTIVE && state != PAGE_FULL) continue;
        if (crc32_le(0xFFFFFFFF, p + 4, 24) != u32le(p + 28)) continue;
        pages.push_back({u32le(p + 4), p});
    }
    if (pages.empty()) {
        *error = "no active NVS page (is it an NVS image? encrypted images are not supported)";
        return false;
    }
    std::sort(pages.begin(), pages.end(),
              [](const std::pair<uint32_t, const uint8_t*>& a, const std::pair<uint32_t, const uint8_t*>& b) {
                  return a.first < b.first;
              });

    std::map<uint8_t, std::string> namespaces;
    std::vector<RawEntry> entries;
    for (auto& page : pages) {
        const uint8_t* p = page.second;
        for (size_t i = 0; i < ENTRIES_PER_PAGE; i++) {
            if (entry_state(p, i) != ENTRY_WRITTEN) continue;
            const uint8_t* e = p + FIRST_ENTRY_OFFSET + i * ENTRY_SIZE;
            uint8_t span = e[2] ? e[2] : 1;
            if (entry_crc(e) != u32le(e + 4)) continue;
            RawEntry r{e[0], e[1], e[3], entry_key(e), e, {}};
            if (r.type == STR || r.type == BLOB || r.type == BLOB_V1) {
                size_t size = u16le(e + 24);
                size_t room = (span - 1) * ENTRY_SIZE;
                if (size > room || i + span > ENTRIES_PER_PAGE) {
                    i += span - 1;
                    continue;
                }
                const uint8_t* d = e + ENTRY_SIZE;
                if (crc32_le(0xFFFFFFFF, d, size) != u32le(e + 28)) {
                    i += span - 1;
                    continue;
                }
                r.data.assign(d, d + size);
            }
            i += span - 1;
            if (r.ns == 0 && r.type == U8) {
                namespaces[e[24]] = r.key;
                continue;
            }
            entries.push_back(std::move(r));
        }
    }

    std::map<std::tuple<uint8_t, std::string, uint8_t>, const RawEntry*> chunks;
    for (auto& r : entries)
        if (r.type == BLOB) chunks[std::make_tuple(r.ns, r.key, r.chunk)] = &r;

    for (auto& r : entries) {
        auto ns = namespaces.find(r.ns);
        if (ns == namespaces.end()) continue;
        Value v;
        v.type = r.type;
        switch (r.type) {
            case U8: v.integer = r.entry[24]; break;
            case I8: v.integer = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int8_t>(r.entry[24]))); break;
            case U16: v.integer = u16le(r.entry + 24); break;
            case I16: v.integer = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(u16le(r.entry + 24)))); break;
            case U32: v.integer = u32le(r.entry + 24); break;
            case I32: v.integer = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(u32le(r.entry + 24)))); break;
            case U64:
            case I64: v.integer = u32le(r.entry + 24) | (static_cast<uint64_t>(u32le(r.entry + 28)) << 32); break;
            case STR: v.bytes = r.data; break;
            case BLOB_V1: v.type = BLOB; v.bytes = r.data; break;
            case BLOB_IDX: {
                uint32_t size = u32le(r.entry + 24);
                uint8_t count = r.entry[28];
                uint8_t start = r.entry[29];
                v.type = BLOB;
                bool whole = true;
                for (uint8_t c = 0; c < count && whole; c++) {
                    auto it = chunks.find(std::make_tuple(r.ns, r.key, static_cast<uint8_t>(start + c)));
                    if (it == chunks.end()) whole = false;
                    else v.bytes.insert(v.bytes.end(), it->second->data.begin(), it->second->data.end());
                }
                if (!whole || v.bytes.size() != size) continue;
                break;
            }
            default:
                continue;  // BLOB data chunks are assembled under their index entry
        }
        (*out)[ns->second][r.key] = std::move(v);
    }
    for (auto& ns : namespaces) (*out)[ns.second];  // namespaces exist even when empty
    return true;
}

Store& Store::instance() {
    static Store store;
    return store;
}

bool Store::exists(const std::string& label) {
    if (label == "nvs") return true;
    const char* listed = getenv("GEN_SIM_NVS_PARTITIONS");
    std::string all = std::string(",") + (listed ? listed : "") + ",";
    return all.find("," + label + ",") != std::string::npos;
}

int Store::init(const std::string& label, std::string* message, const uint8_t* xts_keys) {
    Partition& partition = partitions[label];
    if (partition.initialized) return 0;
    partition.contents.clear();
    const char* path = label == "nvs" ? getenv("GEN_SIM_NVS") : nullptr;
    if (path && *path && !partition.erased) {
        std::ifstream f(path, std::ios::binary);
        if (!f) {
            *message = std::string("GEN_SIM_NVS: cannot read ") + path;
            return 0x105;  // ESP_ERR_NOT_FOUND: as if the partition were missing
        }
        std::vector<uint8_t> image((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        std::string error;
        if (xts_keys && !xts_decrypt_image(&image, xts_keys, &error)) {
            *message = std::string("GEN_SIM_NVS: ") + path + ": " + error;
            return 0x1113;  // ESP_ERR_NVS_XTS_CFG_FAILED
        }
        if (!parse_image(image.data(), image.size(), &partition.contents, &error)) {
            *message = std::string("GEN_SIM_NVS: ") + path + ": " + error;
            return 0x110d;  // ESP_ERR_NVS_NO_FREE_PAGES: what the device reports for an unreadable partition
        }
    }
    delete partition.journal;      // (re)opened at every init: it replays everything written so far
    partition.journal = new Journal();
    if (!partition.journal->open(label, &partition.contents, message, xts_keys)) {
        return 0x105;
    }
    partition.initialized = true;
    return 0;
}

void Store::wrote(const std::string& label, const std::string& ns, const std::string& key, const Value* value) {
    Journal* journal = partitions[label].journal;
    if (!journal) return;
    if (value) journal->set(ns, key, *value);
    else journal->erase(ns, key);
}

void Store::erased_namespace(const std::string& label, const std::string& ns) {
    Journal* journal = partitions[label].journal;
    if (journal) journal->erase_namespace(ns);
}

void Store::erase(const std::string& label) {
    Partition& partition = partitions[label];
    partition.contents.clear();
    partition.initialized = false;
    partition.erased = true;
    if (partition.journal) partition.journal->erase_partition();
}

}  // namespace nvs
}  // namespace gen_host
