// Host runtime: NVS encryption as components/nvs_flash does it (nvs_encrypted_partition.cpp): every 32-byte entry
// of a page is XTS-AES-256 encrypted with the data key and tweak key of nvs_sec_cfg_t, the entry's offset in the
// partition (little-endian) as the data unit; the page header and the entry state bitmap stay plain.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace gen_host {
namespace nvs {

// Decrypts every written entry of `image` in place with `keys` (eky then tky, 32 bytes each), as the device reads
// them; wrong keys leave garbage, whose CRCs then fail as they do on the device. False (and `error`) when mbedTLS
// refuses the keys.
// The CRC32 nvs_flash_read_security_cfg checks the keys with (esp_crc32_le from 0xFFFFFFFF).
uint32_t keys_crc32(const uint8_t* data, size_t len);

bool xts_decrypt_image(std::vector<uint8_t>* image, const uint8_t keys[64], std::string* error);

// Encrypts (or decrypts) `len` bytes in place, 32-byte units each with its own offset (first_offset, + 32, ...) as
// the data unit, as the device writes an entry. `len` must be a multiple of 32. False when mbedTLS refuses.
bool xts_crypt_units(bool encrypt, const uint8_t keys[64], uint64_t first_offset, uint8_t* data, size_t len);

}  // namespace nvs
}  // namespace gen_host
