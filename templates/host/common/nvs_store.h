// The device's NVS partition: read from the image file named by GEN_SIM_NVS (the format written by
// esp-idf-nvs-partition-gen, version 2: 4 KiB pages, 32-byte entries, CRC32 checked), then kept in
// memory. Writes change memory only; the image file is never modified.
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

// The process-wide store behind nvs.h and Preferences.
struct Store {
    std::mutex mutex;
    bool initialized = false;
    bool erased = false;       // nvs_flash_erase() was called: the image file is no longer read
    Contents contents;
    static Store& instance();
    // Loads GEN_SIM_NVS (if set). Returns 0 or an esp_err_t style code, with a message.
    int init(std::string* message);
};

}  // namespace nvs
}  // namespace gen_host
