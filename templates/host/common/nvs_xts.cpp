// Host runtime: XTS-AES decryption of an encrypted NVS image (nvs_xts.h), with mbedTLS as the device does.
#include "nvs_xts.h"

#include <string.h>

#include <mbedtls/aes.h>

namespace gen_host {
namespace nvs {

namespace {
const size_t PAGE = 4096, FIRST_ENTRY = 64, ENTRY = 32, ENTRIES = 126;

// One 32-byte unit with its offset (little-endian, 16 bytes) as the data unit (nvs_encrypted_partition.cpp).
bool crypt_unit(mbedtls_aes_xts_context* ctx, int mode, uint64_t offset, const uint8_t* in, uint8_t* out) {
    uint8_t unit[16] = {0};
    for (size_t b = 0; b < 8; b++) unit[b] = (uint8_t)(offset >> (8 * b));
    return mbedtls_aes_crypt_xts(ctx, mode, ENTRY, unit, in, out) == 0;
}
}  // namespace

bool xts_crypt_units(bool encrypt, const uint8_t keys[64], uint64_t first_offset, uint8_t* data, size_t len) {
    if (len % ENTRY) return false;
    mbedtls_aes_xts_context ctx;
    mbedtls_aes_xts_init(&ctx);
    int rc = encrypt ? mbedtls_aes_xts_setkey_enc(&ctx, keys, 512) : mbedtls_aes_xts_setkey_dec(&ctx, keys, 512);
    bool ok = rc == 0;
    for (size_t at = 0; ok && at < len; at += ENTRY) {
        uint8_t out[ENTRY];
        ok = crypt_unit(&ctx, encrypt ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT, first_offset + at, data + at, out);
        memcpy(data + at, out, ENTRY);
    }
    mbedtls_aes_xts_free(&ctx);
    return ok;
}

uint32_t keys_crc32(const uint8_t* data, size_t len) {
    uint32_t c = 0;      // ~0xFFFFFFFF
    for (size_t i = 0; i < len; i++) {
        c ^= data[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

bool xts_decrypt_image(std::vector<uint8_t>* image, const uint8_t keys[64], std::string* error) {
    mbedtls_aes_xts_context ctx;
    mbedtls_aes_xts_init(&ctx);
    if (mbedtls_aes_xts_setkey_dec(&ctx, keys, 512) != 0) {
        mbedtls_aes_xts_free(&ctx);
        *error = "the NVS keys are not XTS-AES-256 keys";
        return false;
    }
    for (size_t page = 0; page + PAGE <= image->size(); page += PAGE) {
        uint8_t* p = image->data() + page;
        if (p[0] == 0xff && p[1] == 0xff && p[2] == 0xff && p[3] == 0xff) continue;   // an empty page
        for (size_t i = 0; i < ENTRIES; i++) {
            uint8_t state = (p[32 + i / 4] >> (2 * (i % 4))) & 0x3;
            if (state == 0x3) continue;                                           // never written
            size_t offset = page + FIRST_ENTRY + i * ENTRY;
            uint8_t plain[ENTRY];
            if (!crypt_unit(&ctx, MBEDTLS_AES_DECRYPT, offset, image->data() + offset, plain)) {
                mbedtls_aes_xts_free(&ctx);
                *error = "XTS-AES decryption failed";
                return false;
            }
            memcpy(image->data() + offset, plain, ENTRY);
        }
    }
    mbedtls_aes_xts_free(&ctx);
    return true;
}

}  // namespace nvs
}  // namespace gen_host
