// esp_image_verify and the app-side Secure Boot V2 check, for the runtime's esp_ota_* and Update. See
// gen_app_image.h; the rules and their log lines follow esp-idf v5.5.3's esp_image_format.c and
// secure_boot_v2/secure_boot_signatures_app.c.
#include "gen_app_image.h"

#include <string.h>

#include <vector>

#include <mbedtls/md.h>
#include <mbedtls/rsa.h>

#include "esp_app_format.h"
#include "esp_ota_ops.h"
#include "gen_sim.h"

namespace gen_host {

namespace {

const uint32_t SECTOR = 4096;
const uint8_t CHECKSUM_MAGIC = 0xEF;
// ets_secure_boot_sig_block_t (RSA): magic, version, 2 pad, image digest[32], key {n[384], e, rinv[384], mdash},
// signature[384], crc32, padding[16].
const size_t BLOCK_SIZE = 1216, BLOCK_DIGEST = 4, BLOCK_KEY = 36, BLOCK_KEY_LENGTH = 776, BLOCK_E = 420,
             BLOCK_SIGNATURE = 812, BLOCK_CRC = 1196, RSA_BYTES = 384;

bool fail(std::string* why, const std::string& text) {
    if (why) *why = text;
    return false;
}

struct Sha256 {
    mbedtls_md_context_t md;
    Sha256() {
        mbedtls_md_init(&md);
        mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0);
        mbedtls_md_starts(&md);
    }
    ~Sha256() { mbedtls_md_free(&md); }
    void add(const uint8_t* data, size_t length) { mbedtls_md_update(&md, data, length); }
    void finish(uint8_t out[32]) { mbedtls_md_finish(&md, out); }
};

// Reads [offset, offset + length) of the partition into the hash (and the checksum, when given).
bool hash_range(const esp_partition_t* p, uint32_t offset, uint32_t length, Sha256* sha, uint8_t* checksum) {
    uint8_t chunk[SECTOR];
    while (length > 0) {
        const uint32_t n = length < SECTOR ? length : SECTOR;
        if (esp_partition_read(p, offset, chunk, n) != ESP_OK) return false;
        sha->add(chunk, n);
        if (checksum) {
            for (uint32_t i = 0; i < n; ++i) *checksum ^= chunk[i];
        }
        offset += n;
        length -= n;
    }
    return true;
}

// The layout and integrity of the image: its end (after the appended hash), or 0 with *why.
uint32_t check_image(const esp_partition_t* p, std::string* why) {
    esp_image_header_t header;
    if (esp_partition_read(p, 0, &header, sizeof header) != ESP_OK) {
        fail(why, "image header cannot be read");
        return 0;
    }
    if (header.magic != ESP_IMAGE_HEADER_MAGIC) {
        fail(why, "image at 0x" + std::to_string(p->address) + " has invalid magic byte");
        return 0;
    }
    if (header.segment_count == 0 || header.segment_count > ESP_IMAGE_MAX_SEGMENTS) {
        fail(why, "image has invalid segment count " + std::to_string(header.segment_count));
        return 0;
    }
    if (static_cast<uint16_t>(header.chip_id) != gen_sim_firmware_chip_id) {
        char text[96];
        snprintf(text, sizeof text, "mismatch chip ID, expected %u, found %u", gen_sim_firmware_chip_id,
                 static_cast<unsigned>(header.chip_id));
        fail(why, text);
        return 0;
    }
    if (header.min_chip_rev_full > GEN_SIM_CHIP_REVISION) {
        fail(why, "image requires chip rev >= v" + std::to_string(header.min_chip_rev_full / 100) + "." +
                      std::to_string(header.min_chip_rev_full % 100) + ", but chip is v3.0");
        return 0;
    }
    Sha256 sha;
    sha.add(reinterpret_cast<const uint8_t*>(&header), sizeof header);
    uint8_t checksum = CHECKSUM_MAGIC;
    uint32_t position = sizeof header;
    for (unsigned i = 0; i < header.segment_count; ++i) {
        esp_image_segment_header_t segment;
        if (position + sizeof segment > p->size || esp_partition_read(p, position, &segment, sizeof segment) != ESP_OK) {
            fail(why, "segment " + std::to_string(i) + " header is past the end of the partition");
            return 0;
        }
        sha.add(reinterpret_cast<const uint8_t*>(&segment), sizeof segment);
        position += sizeof segment;
        if (segment.data_len % 4 != 0) {
            fail(why, "unaligned segment length 0x" + std::to_string(segment.data_len));
            return 0;
        }
        if (segment.data_len > p->size - position) {
            fail(why, "image segment " + std::to_string(i) + " runs past the end of the partition");
            return 0;
        }
        if (!hash_range(p, position, segment.data_len, &sha, &checksum)) {
            fail(why, "image segment " + std::to_string(i) + " cannot be read");
            return 0;
        }
        position += segment.data_len;
    }
    const uint32_t padding = 15 - position % 16;
    uint8_t tail[16];
    if (position + padding + 1 > p->size || esp_partition_read(p, position, tail, padding + 1) != ESP_OK) {
        fail(why, "image checksum is past the end of the partition");
        return 0;
    }
    sha.add(tail, padding + 1);
    position += padding + 1;
    if (tail[padding] != checksum) {
        char text[96];
        snprintf(text, sizeof text, "Checksum failed. Calculated 0x%x read 0x%x", checksum, tail[padding]);
        fail(why, text);
        return 0;
    }
    if (header.hash_appended) {
        uint8_t expected[32], stored[32];
        sha.finish(expected);
        if (position + 32 > p->size || esp_partition_read(p, position, stored, 32) != ESP_OK ||
            memcmp(expected, stored, 32) != 0) {
            fail(why, "Image hash failed - image is corrupt");
            return 0;
        }
        position += 32;
    }
    return position;
}

// The first signature block in the sector after an image that ends at `end`, if it is a valid one (magic,
// version, CRC); its bytes in `block`.
bool read_signature_block(const esp_partition_t* p, uint32_t end, uint8_t block[BLOCK_SIZE]) {
    const uint32_t offset = (end + SECTOR - 1) / SECTOR * SECTOR;
    if (offset + BLOCK_SIZE > p->size || esp_partition_read(p, offset, block, BLOCK_SIZE) != ESP_OK) return false;
    uint32_t crc;
    memcpy(&crc, block + BLOCK_CRC, sizeof crc);
    return block[0] == 0xE7 && block[1] == 0x02 && crc32_le(0, block, BLOCK_CRC) == crc;
}

void key_digest(const uint8_t block[BLOCK_SIZE], uint8_t out[32]) {
    Sha256 sha;
    sha.add(block + BLOCK_KEY, BLOCK_KEY_LENGTH);
    sha.finish(out);
}

bool check_signature_block(const esp_partition_t* p, uint32_t end, std::string* why) {
    const esp_partition_t* running = esp_ota_get_running_partition();
    uint8_t trusted[BLOCK_SIZE];
    std::string running_why;
    const uint32_t running_end = running ? check_image(running, &running_why) : 0;
    if (running_end == 0 || !read_signature_block(running, running_end, trusted)) {
        return fail(why, "No signatures were found for the running app");   // secure_boot_signatures_app.c:159
    }
    uint8_t block[BLOCK_SIZE];
    if (!read_signature_block(p, end, block)) {
        return fail(why, "Secure boot signature block is missing or invalid in the new image");
    }
    uint8_t trusted_digest[32], digest[32];
    key_digest(trusted, trusted_digest);
    key_digest(block, digest);
    if (memcmp(trusted_digest, digest, 32) != 0) {
        return fail(why, "Secure boot key (0) is not one the running app trusts");
    }
    const uint32_t signed_length = (end + SECTOR - 1) / SECTOR * SECTOR;
    Sha256 sha;
    uint8_t image_digest[32];
    if (!hash_range(p, 0, signed_length, &sha, nullptr)) return fail(why, "image cannot be read");
    sha.finish(image_digest);
    if (memcmp(image_digest, block + BLOCK_DIGEST, 32) != 0) {
        return fail(why, "Secure boot image digest does not match the signature block (altered after signing)");
    }
    uint8_t n[RSA_BYTES], signature[RSA_BYTES], e[4];
    for (size_t i = 0; i < RSA_BYTES; ++i) {     // the block is little-endian; mbedTLS wants big-endian
        n[i] = block[BLOCK_KEY + RSA_BYTES - 1 - i];
        signature[i] = block[BLOCK_SIGNATURE + RSA_BYTES - 1 - i];
    }
    for (size_t i = 0; i < sizeof e; ++i) e[i] = block[BLOCK_E + sizeof e - 1 - i];
    mbedtls_rsa_context rsa;
    mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
    const bool valid = mbedtls_rsa_import_raw(&rsa, n, sizeof n, nullptr, 0, nullptr, 0, nullptr, 0, e, sizeof e) == 0 &&
                       mbedtls_rsa_complete(&rsa) == 0 &&
                       mbedtls_rsa_rsassa_pss_verify(&rsa, nullptr, nullptr, MBEDTLS_RSA_PUBLIC, MBEDTLS_MD_SHA256, 32,
                                                     image_digest, signature) == 0;
    mbedtls_rsa_free(&rsa);
    return valid || fail(why, "Secure Boot V2 verification failed.");
}

}  // namespace

uint32_t crc32_le(uint32_t crc, const uint8_t* data, size_t length) {
    crc = ~crc;
    for (size_t i = 0; i < length; ++i) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

esp_err_t verify_app_image(const esp_partition_t* partition, bool check_signature, uint32_t* length,
                           std::string* why) {
    const uint32_t end = check_image(partition, why);
    if (end == 0) return ESP_FAIL;
    if (check_signature && !check_signature_block(partition, end, why)) return ESP_FAIL;
    if (length) *length = end;
    return ESP_OK;
}

}  // namespace gen_host
