// The device's flash, kept across runs: with GEN_SIM_NVS_STATE=DIR each NVS partition's writes are appended to
// DIR/<label>.journal, one record per nvs_set_* / nvs_erase_* in a single write(2) at the moment the device would
// have written flash (nvs_commit is a no-op on the device: every set is on flash when it returns). At init the
// partition is the image (for "nvs": GEN_SIM_NVS) with the journal replayed on top; a torn last record is ignored,
// as NVS drops "the key-value pair being written" on power loss. So kill -9 at any moment loses nothing written.
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
    bool open(const std::string& label, Contents* contents, std::string* message);
    bool active() const { return fd_ >= 0; }
    void set(const std::string& ns, const std::string& key, const Value& value);
    void erase(const std::string& ns, const std::string& key);
    void erase_namespace(const std::string& ns);
    void erase_partition();   // nvs_flash_erase_partition: what the image held is gone too

private:
    void append(const std::string& record);
    int fd_ = -1;
    std::string path_;
};

}  // namespace nvs
}  // namespace gen_host
