// The device's NVS partitions. "nvs" is read from the image file named by GEN_SIM_NVS (the format written by
// esp-idf-nvs-partition-gen, version 2: 4 KiB pages, 32-byte entries, CRC32 checked); the others the firmware's
// partition table lists (GEN_SIM_NVS_PARTITIONS, e.g. "gen_cred") start empty, like freshly erased flash. The
// image file is never modified; with GEN_SIM_NVS_STATE every write is kept across runs (nvs_journal.h).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace gen_host {
namespace nvs {

enum Type : uint8_t {
    U8 = 0x01, I8 = 0x11, U16 = 0x02, I16 = 0x12, U32 = 0x04, I32 = 0x14, U64 = 0x08, I64 = 0x18,
    STR = 0x21, BLOB = 0x42, BLOB_IDX = 0x48, BLOB_V1 = 0x41,
};

struct Value {
    uint8_t type = 0;          // STR and BLOB carry bytes (STR includes its NUL); others `integer`
    std::vector<uint8_t> bytes;
    uint64_t integer = 0;
};

using Namespace = std::map<std::string, Value>;
using Contents = std::map<std::string, Namespace>;

// Decodes an image; entries with a bad CRC are skipped (as the device does). False + error if the
// buffer is not an NVS image at all.
bool parse_image(const uint8_t* data, size_t len, Contents* out, std::string* error);

class Journal;

struct Partition {
    bool initialized = false;
    bool erased = false;       // nvs_flash_erase_partition() was called: the image file is no longer read
    Contents contents;
    Journal* journal = nullptr;
};

// The process-wide store behind nvs.h and Preferences.
struct Store {
    std::mutex mutex;
    std::map<std::string, Partition> partitions;
    static Store& instance();
    // Whether the partition table has an NVS partition of this label ("nvs", or one in GEN_SIM_NVS_PARTITIONS).
    static bool exists(const std::string& label);
    // Loads the partition (GEN_SIM_NVS for "nvs"; its journal). Returns 0 or an esp_err_t style code, with a message.
    // `xts_keys` (eky, tky: nvs_flash_secure_init_partition): the image is decrypted as the device reads it.
    int init(const std::string& label, std::string* message, const uint8_t* xts_keys = nullptr);
    // Keeps what the firmware wrote (GEN_SIM_NVS_STATE), after `contents` changed.
    void wrote(const std::string& label, const std::string& ns, const std::string& key, const Value* value);
    void erased_namespace(const std::string& label, const std::string& ns);
    void erase(const std::string& label);
};

}  // namespace nvs
}  // namespace gen_host
