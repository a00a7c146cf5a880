// The checks ESP-IDF makes of an app image in flash (esp_image_verify, components/bootloader_support/src/
// esp_image_format.c, and secure_boot_v2/secure_boot_signatures_app.c): the runtime's esp_ota_* and Update call
// them, as the real ones do. Not a device API: the firmware never includes this.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "esp_err.h"
#include "esp_partition.h"

namespace gen_host {

// The image at the start of `partition`: magic, chip id (gen_sim_firmware_chip_id) and revision, segments within
// the partition, checksum, appended SHA-256; with `check_signature`, the Secure Boot V2 RSA-3072 signature block in
// the sector after the image, by a key the running image carries (CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT).
// ESP_OK, or ESP_FAIL with *why set (in the words of ESP-IDF's log lines). *length: the image's bytes, unsigned.
esp_err_t verify_app_image(const esp_partition_t* partition, bool check_signature, uint32_t* length, std::string* why);

// CRC-32 as esp_rom_crc32_le (the otadata entries' and the signature block's).
uint32_t crc32_le(uint32_t crc, const uint8_t* data, size_t length);

}  // namespace gen_host
