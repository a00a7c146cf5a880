#include "nvs_journal.h"

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

// Applies the complete records of a journal; returns how many bytes they span (a torn tail is left out).
size_t replay(const std::vector<uint8_t>& data, Contents* contents) {
    size_t at = 0;
    while (at + 8 <= data.size()) {
        uint32_t length = get_u32(&data[at]);
        if (length < 2 || at + 8 + length > data.size()) break;
        const uint8_t* body = &data[at + 4];
        if (crc32(body, length) != get_u32(body + length)) break;
        size_t p = 1;
        std::string ns, key;
        if (!take_text(body, length, &p, &ns) || !take_text(body, length, &p, &key) || p + 13 > length) break;
        Value value;
        value.type = body[p];
        value.integer = get_u32(body + p + 1) | (static_cast<uint64_t>(get_u32(body + p + 5)) << 32);
        uint32_t n = get_u32(body + p + 9);
        p += 13;
        if (p + n != length) break;
        value.bytes.assign(body + p, body + p + n);
        switch (body[0]) {
            case SET: (*contents)[ns][key] = value; break;
            case ERASE: (*contents)[ns].erase(key); break;
            case ERASE_NAMESPACE: (*contents)[ns].clear(); break;
            case ERASE_PARTITION: contents->clear(); break;
            default: return at;
        }
        at += 8 + length;
    }
    return at;
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

bool Journal::open(const std::string& label, Contents* contents, std::string* message) {
    const char* dir = getenv("GEN_SIM_NVS_STATE");
    if (!dir || !*dir) return true;
    make_dirs(dir);
    path_ = std::string(dir) + "/" + label + ".journal";
    std::vector<uint8_t> data;
    {
        std::ifstream f(path_, std::ios::binary);
        if (f) data.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    const bool was_erased = !data.empty() && data.size() > 4 && data[4] == ERASE_PARTITION;
    replay(data, contents);
    // Compacted: the state as it is now, one record per key (after an erase, the image stays out of it).
    std::string snapshot = was_erased ? record(ERASE_PARTITION, "", "", nullptr) : std::string();
    for (auto& ns : *contents) {
        snapshot += record(ERASE_NAMESPACE, ns.first, "", nullptr);
        for (auto& kv : ns.second) snapshot += record(SET, ns.first, kv.first, &kv.second);
    }
    const std::string temp = path_ + ".tmp";
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, snapshot.data(), snapshot.size()) != static_cast<ssize_t>(snapshot.size()) ||
        fsync(fd) != 0 || close(fd) != 0 || rename(temp.c_str(), path_.c_str()) != 0) {
        *message = "GEN_SIM_NVS_STATE: cannot write " + path_ + ": " + strerror(errno);
        return false;
    }
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND);
    if (fd_ < 0) {
        *message = "GEN_SIM_NVS_STATE: cannot open " + path_ + ": " + strerror(errno);
        return false;
    }
    return true;
}

void Journal::append(const std::string& rec) {
    if (fd_ < 0) return;
    if (write(fd_, rec.data(), rec.size()) != static_cast<ssize_t>(rec.size())) {
        // The flash is full or gone: what the device would see as a failed write. Nothing else to do here.
        return;
    }
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
    if (ftruncate(fd_, 0) == 0) append(rec);
}

}  // namespace nvs
}  // namespace gen_host
