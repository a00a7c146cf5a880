// The device's flash, kept across runs: with GEN_SIM_NVS_STATE=DIR each NVS partition's writes are appended to
// DIR/<label>.journal, one record per nvs_set_* / nvs_erase_* in a single write(2) at the moment the device would
// have written flash (nvs_commit is a no-op on the device: every set is on flash when it returns). At init the
// partition is the image (for "nvs": GEN_SIM_NVS) with the journal replayed on top; a torn last record is ignored,
// as NVS drops "the key-value pair being written" on power loss. So kill -9 at any moment loses nothing written.
// A partition opened with XTS keys (nvs_flash_secure_init_partition) is encrypted in its journal as on the flash:
// each record [u32 n][n bytes], the record padded with 0xFF to 32-byte units, each unit XTS-AES-256 encrypted with
// its offset in the file as the data unit (nvs_xts.h); read with other keys, the first record's CRC fails and the
// partition reads as empty, as the device's entries do.
#pragma once

#include <stdint.h>

#include <string>

#include "nvs_store.h"

namespace gen_host {
namespace nvs {

class Journal {
public:
    Journal() = default;
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;
    ~Journal();
    // Opens DIR/<label>.journal when GEN_SIM_NVS_STATE is set (else every call does nothing). Replays it onto
    // *contents and compacts it to one record per key. False + message when the directory cannot be used.
    // `xts_keys` (eky, tky; nullptr: a plain partition): the journal is read and written encrypted with them.
    bool open(const std::string& label, Contents* contents, std::string* message,
              const uint8_t* xts_keys = nullptr);
    bool active() const { return fd_ >= 0; }
    void set(const std::string& ns, const std::string& key, const Value& value);
    void erase(const std::string& ns, const std::string& key);
    void erase_namespace(const std::string& ns);
    void erase_partition();   // nvs_flash_erase_partition: what the image held is gone too

private:
    void append(const std::string& record);
    std::string sealed(const std::string& record, uint64_t offset) const;
    int fd_ = -1;
    uint64_t size_ = 0;            // the journal's length: where the next record starts (its data units)
    std::string keys_;             // eky + tky, or empty
    std::string path_;
};

}  // namespace nvs
}  // namespace gen_host
