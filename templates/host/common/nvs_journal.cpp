#include "nvs_journal.h"
#include "nvs_xts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <vector>

namespace gen_host {
namespace nvs {

namespace {

enum Op : uint8_t { SET = 1, ERASE = 2, ERASE_NAMESPACE = 3, ERASE_PARTITION = 4 };

uint32_t crc32(const uint8_t* data, size_t len) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c ^= data[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

void put_u32(std::string* out, uint32_t v) {
    for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint32_t get_u32(const uint8_t* p) {
    return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void put_text(std::string* out, const std::string& text) {
    out->push_back(static_cast<char>(text.size()));
    out->append(text);
}

// [u32 length of body][body: op, ns, key, type, u64 integer, u32 n, n bytes][u32 CRC32 of body]
std::string record(uint8_t op, const std::string& ns, const std::string& key, const Value* value) {
    std::string body(1, static_cast<char>(op));
    put_text(&body, ns);
    put_text(&body, key);
    body.push_back(static_cast<char>(value ? value->type : 0));
    uint64_t integer = value ? value->integer : 0;
    put_u32(&body, static_cast<uint32_t>(integer));
    put_u32(&body, static_cast<uint32_t>(integer >> 32));
    put_u32(&body, value ? static_cast<uint32_t>(value->bytes.size()) : 0);
    if (value) body.append(value->bytes.begin(), value->bytes.end());
    std::string out;
    put_u32(&out, static_cast<uint32_t>(body.size()));
    out += body;
    put_u32(&out, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
    return out;
}

bool take_text(const uint8_t* body, size_t size, size_t* at, std::string* out) {
    if (*at >= size) return false;
    size_t n = body[(*at)++];
    if (*at + n > size) return false;
    out->assign(reinterpret_cast<const char*>(body + *at), n);
    *at += n;
    return true;
}

// Applies the plain record at `rec` (at most `avail` bytes there); returns its length, 0 if torn or unreadable.
size_t apply(const uint8_t* rec, size_t avail, Contents* contents, uint8_t* op) {
    if (avail < 8) return 0;
    uint32_t length = get_u32(rec);
    if (length < 2 || 8 + static_cast<size_t>(length) > avail) return 0;
    const uint8_t* body = rec + 4;
    if (crc32(body, length) != get_u32(body + length)) return 0;
    size_t p = 1;
    std::string ns, key;
    if (!take_text(body, length, &p, &ns) || !take_text(body, length, &p, &key) || p + 13 > length) return 0;
    Value value;
    value.type = body[p];
    value.integer = get_u32(body + p + 1) | (static_cast<uint64_t>(get_u32(body + p + 5)) << 32);
    uint32_t n = get_u32(body + p + 9);
    p += 13;
    if (p + n != length) return 0;
    value.bytes.assign(body + p, body + p + n);
    switch (body[0]) {
        case SET: (*contents)[ns][key] = value; break;
        case ERASE: (*contents)[ns].erase(key); break;
        case ERASE_NAMESPACE: (*contents)[ns].clear(); break;
        case ERASE_PARTITION: contents->clear(); break;
        default: return 0;
    }
    *op = body[0];
    return 8 + length;
}

// Applies the complete records of a journal (decrypted in place with `keys` when it is encrypted); a torn tail, or
// a record that does not decrypt to a valid one, ends it. Whether it starts with an erase of the partition.
bool replay(std::vector<uint8_t>* data, Contents* contents, const std::string& keys) {
    bool starts_with_erase = false;
    size_t at = 0;
    while (at < data->size()) {
        uint8_t* rec = data->data() + at;
        const size_t avail = data->size() - at;
        uint8_t op = 0;
        size_t used = 0;
        if (keys.empty()) {
            used = apply(rec, avail, contents, &op);
        } else if (avail > 4) {
            const size_t n = get_u32(rec);
            const auto* key_bytes = reinterpret_cast<const uint8_t*>(keys.data());
            if (n != 0 && n % 32 == 0 && 4 + n <= avail && xts_crypt_units(false, key_bytes, at + 4, rec + 4, n) &&
                apply(rec + 4, n, contents, &op) != 0) {
                used = 4 + n;
            }
        }
        if (used == 0) break;
        if (at == 0) starts_with_erase = op == ERASE_PARTITION;
        at += used;
    }
    return starts_with_erase;
}

// mkdir -p: the state directory of a device that never ran before.
void make_dirs(const std::string& path) {
    for (size_t at = 1; at <= path.size(); at++) {
        if (at == path.size() || path[at] == '/') mkdir(path.substr(0, at).c_str(), 0700);
    }
}

}  // namespace

Journal::~Journal() {
    if (fd_ >= 0) close(fd_);
}

bool Journal::open(const std::string& label, Contents* contents, std::string* message, const uint8_t* xts_keys) {
    const char* dir = getenv("GEN_SIM_NVS_STATE");
    if (!dir || !*dir) return true;
    keys_ = xts_keys ? std::string(reinterpret_cast<const char*>(xts_keys), 64) : std::string();
    make_dirs(dir);
    path_ = std::string(dir) + "/" + label + ".journal";
    std::vector<uint8_t> data;
    {
        std::ifstream f(path_, std::ios::binary);
        if (f) data.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    const bool was_erased = replay(&data, contents, keys_);
    // Compacted: the state as it is now, one record per key (after an erase, the image stays out of it).
    std::string snapshot;
    auto add = [&](const std::string& rec) { snapshot += sealed(rec, snapshot.size()); };
    if (was_erased) add(record(ERASE_PARTITION, "", "", nullptr));
    for (auto& ns : *contents) {
        add(record(ERASE_NAMESPACE, ns.first, "", nullptr));
        for (auto& kv : ns.second) add(record(SET, ns.first, kv.first, &kv.second));
    }
    const std::string temp = path_ + ".tmp";
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, snapshot.data(), snapshot.size()) != static_cast<ssize_t>(snapshot.size()) ||
        fsync(fd) != 0 || close(fd) != 0 || rename(temp.c_str(), path_.c_str()) != 0) {
        *message = "GEN_SIM_NVS_STATE: cannot write " + path_ + ": " + strerror(errno);
        return false;
    }
    size_ = snapshot.size();
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND);
    if (fd_ < 0) {
        *message = "GEN_SIM_NVS_STATE: cannot open " + path_ + ": " + strerror(errno);
        return false;
    }
    return true;
}

// The record as it lies in the file at `offset`: plain, or sealed in XTS-AES units (see nvs_journal.h).
std::string Journal::sealed(const std::string& rec, uint64_t offset) const {
    if (keys_.empty()) return rec;
    std::string units = rec;
    units.resize((rec.size() + 31) / 32 * 32, '\xff');
    xts_crypt_units(true, reinterpret_cast<const uint8_t*>(keys_.data()), offset + 4,
                    reinterpret_cast<uint8_t*>(&units[0]), units.size());
    std::string out;
    put_u32(&out, static_cast<uint32_t>(units.size()));
    return out + units;
}

void Journal::append(const std::string& rec) {
    if (fd_ < 0) return;
    const std::string data = sealed(rec, size_);
    if (write(fd_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
        // The flash is full or gone: what the device would see as a failed write. Nothing else to do here.
        return;
    }
    size_ += data.size();
}

void Journal::set(const std::string& ns, const std::string& key, const Value& value) {
    append(record(SET, ns, key, &value));
}

void Journal::erase(const std::string& ns, const std::string& key) { append(record(ERASE, ns, key, nullptr)); }

void Journal::erase_namespace(const std::string& ns) { append(record(ERASE_NAMESPACE, ns, "", nullptr)); }

void Journal::erase_partition() {
    if (fd_ < 0) return;
    // Start the journal again with the erase: the image below it no longer counts.
    const std::string rec = record(ERASE_PARTITION, "", "", nullptr);
    if (ftruncate(fd_, 0) == 0) {
        size_ = 0;
        append(rec);
    }
}

}  // namespace nvs
}  // namespace gen_host
