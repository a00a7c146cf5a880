// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// Updates over the air. An announcement on the OTA topic is checked, then loop() downloads the image over a
// WiFiClientSecure of its own (the server verified against our CA, this device's certificate presented) into the
// other app slot with Update, hashing every byte. Before Update.end() switches slots, the size, the SHA-256 and the
// Secure Boot V2 signature are checked here: the Arduino core checks no signature. After the reboot the core's
// bootloader (built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) runs the new image on trial; it is marked valid
// once it has reached the broker, and rolled back if it has not within OTA_CONFIRM_TIMEOUT_MS or if it resets
// before. Every step is logged in words; the state of an update goes to the firmware topic.

#include "gen_config.h"

#if GEN_LINK_OTA   // compiled only for a device that updates over the air

#include <Arduino.h>
#include <Update.h>
#include <WiFiClientSecure.h>
#include <esp_ota_ops.h>
#include <esp_partition.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "date_checking_client.h"
#include "ota_common.h"
#include "gen_ota_config.h"
#include "ota_update.h"
#include "ota_version_record.h"
#include "retry_timing.h"
#if GEN_LINK_LOG
#include "log_serial.h"
#define Serial log_serial   // its lines reach the log over MQTT too (log_serial.h)
#endif

// The core marks every new image valid before setup() unless the sketch defers it (esp32-hal-misc.c,
// initArduino): this firmware confirms an image only once it has reached the broker.
extern "C" bool verifyRollbackLater() {
    return true;
}

// This firmware's version, inside its signed image, where an update handler reads it (ota_version_record.h).
extern "C" __attribute__((used)) const OtaVersionRecord ota_version_record = {"gen.ver", FIRMWARE_VERSION_TEXT, "rev.neg"};

namespace {

OtaSettings settings;
PubSubClient* mqtt = nullptr;
const esp_partition_t* running = nullptr;
bool on_trial = false;                   // this image was just installed and is not confirmed yet
bool confirmed_now = false;              // confirmed in this boot (reported once)
bool update_pending = false;
ota_announcement_t pending;              // announced, to be run by ota_loop
char refused_sha256[OTA_SHA256_HEX + 1];   // the last image refused in this boot: not fetched again

// ---- Reporting --------------------------------------------------------------------------------------------

// {"version", "slot", "state", "detail"} on the firmware topic, retained, so `gen ota status` sees it.
void report(const char* state, const char* format, ...) __attribute__((format(printf, 2, 3)));
void report(const char* state, const char* format, ...) {
    if (mqtt == nullptr || !mqtt->connected()) {
        return;
    }
    char payload[OTA_REPORT_CAPACITY];
    va_list args;
    va_start(args, format);
    const size_t length = ota_report_json(payload, sizeof payload, running->label, state, format, args);
    va_end(args);
    if (length == 0) {
        return;
    }
    if (mqtt->publish(settings.firmware_topic, reinterpret_cast<const uint8_t*>(payload),
                      static_cast<unsigned int>(length), true)) {
        Serial.printf("[mqtt] published %u bytes to %s\n", static_cast<unsigned>(length), settings.firmware_topic);
    } else {
        Serial.printf("[mqtt] publish failed on %s\n", settings.firmware_topic);
    }
}

void refuse(const ota_announcement_t& update, const char* format, ...) __attribute__((format(printf, 2, 3)));
void refuse(const ota_announcement_t& update, const char* format, ...) {
    char why[160];
    va_list args;
    va_start(args, format);
    vsnprintf(why, sizeof why, format, args);
    va_end(args);
    memcpy(refused_sha256, update.sha256, sizeof refused_sha256);
    Serial.printf("[ota] refused %s: %s; keeping %s\n", update.version, why, FIRMWARE_VERSION);
    report("refused", "%s: %s", update.version, why);
}

// ---- The signature --------------------------------------------------------------------------------------

// A signed image ends in a 4 KB sector whose first block is Secure Boot V2's (espsecure sign-data --version 2):
// magic 0xE7, version 2, the SHA-256 of everything before the sector, the RSA-3072 key (n, e, r^-1, m'), the
// RSA-PSS signature (numbers little-endian), and a CRC32 of all that.
const size_t SIGNATURE_SECTOR = 4096;
const size_t BLOCK_DIGEST = 4, BLOCK_KEY = 36, BLOCK_KEY_LENGTH = 776, BLOCK_E = 420, BLOCK_SIGNATURE = 812,
             BLOCK_CRC = 1196, RSA_BYTES = 384;
uint8_t signature_sector[SIGNATURE_SECTOR];

uint32_t crc32(const uint8_t* data, size_t length) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < length; ++i) {
        crc ^= data[i];
        for (int shift = 0; shift < 8; ++shift) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

bool sha256(const uint8_t* data, size_t length, uint8_t digest[32]) {
    return mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), data, length, digest) == 0;
}

// Why the signature sector does not prove that this project's key signed `image_digest`, or nullptr.
const char* signature_problem(const uint8_t image_digest[32]) {
    const uint8_t* block = signature_sector;
    uint32_t crc = 0;
    memcpy(&crc, block + BLOCK_CRC, sizeof crc);
    if (block[0] != 0xE7 || block[1] != 0x02 || crc32(block, BLOCK_CRC) != crc) {
        return "it carries no signature";
    }
    if (memcmp(block + BLOCK_DIGEST, image_digest, 32) != 0) {
        return "its signature is for other contents: the image was altered after signing";
    }
    uint8_t key_digest[32];
    if (!sha256(block + BLOCK_KEY, BLOCK_KEY_LENGTH, key_digest) ||
        memcmp(key_digest, OTA_SIGNING_KEY_DIGEST, sizeof key_digest) != 0) {
        return "it is signed with another key than this project's";
    }
    uint8_t n[RSA_BYTES], signature[RSA_BYTES], e[4];
    for (size_t i = 0; i < RSA_BYTES; ++i) {        // little-endian in the block, big-endian for mbedTLS
        n[i] = block[BLOCK_KEY + RSA_BYTES - 1 - i];
        signature[i] = block[BLOCK_SIGNATURE + RSA_BYTES - 1 - i];
    }
    for (size_t i = 0; i < sizeof e; ++i) {
        e[i] = block[BLOCK_E + sizeof e - 1 - i];
    }
    mbedtls_rsa_context rsa;
    mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);   // mbedTLS 2.28, as the core ships it
    const bool valid = mbedtls_rsa_import_raw(&rsa, n, sizeof n, nullptr, 0, nullptr, 0, nullptr, 0, e, sizeof e) == 0
                       && mbedtls_rsa_complete(&rsa) == 0
                       && mbedtls_rsa_rsassa_pss_verify_ext(&rsa, nullptr, nullptr, MBEDTLS_RSA_PUBLIC,
                                                            MBEDTLS_MD_SHA256, 32, image_digest, MBEDTLS_MD_SHA256,
                                                            32, signature) == 0;
    mbedtls_rsa_free(&rsa);
    return valid ? nullptr : "its RSA-PSS signature does not verify";
}

// ---- The download ---------------------------------------------------------------------------------------

// Up to `capacity` bytes from the server, keeping the MQTT session alive while waiting: >0 bytes, 0 when the
// connection closed or stalled for OTA_STALL_TIMEOUT_MS.
size_t receive(WiFiClientSecure& client, uint8_t* buffer, size_t capacity) {
    const uint32_t deadline = millis() + OTA_STALL_TIMEOUT_MS;
    for (;;) {
        const int available = client.available();
        if (available > 0) {
            const int n = client.read(buffer, capacity < static_cast<size_t>(available) ? capacity
                                                                                         : static_cast<size_t>(available));
            if (n > 0) {
                return static_cast<size_t>(n);
            }
        } else if (!client.connected() || retry_due(millis(), deadline)) {
            return 0;
        }
        mqtt->loop();
        delay(1);
    }
}

// The status line and headers: true for "200" with Content-Length `size`.
bool read_response_head(WiFiClientSecure& client, const ota_announcement_t& update) {
    char line[256];
    size_t used = 0;
    int status = 0;
    long content_length = -1;
    bool first = true;
    for (;;) {
        uint8_t c;
        if (receive(client, &c, 1) == 0) {
            refuse(update, "the update server closed the connection before its reply");
            return false;
        }
        if (c != '\n') {
            if (used + 1 < sizeof line && c != '\r') {
                line[used++] = static_cast<char>(c);
            }
            continue;
        }
        line[used] = '\0';
        used = 0;
        if (first) {
            first = false;
            if (sscanf(line, "HTTP/%*d.%*d %d", &status) != 1) {
                refuse(update, "the update server did not answer in HTTP");
                return false;
            }
        } else if (line[0] == '\0') {
            break;
        } else if (strncasecmp(line, "Content-Length:", 15) == 0) {
            content_length = strtol(line + 15, nullptr, 10);
        }
    }
    if (status != 200) {
        refuse(update, "the update server answered %d (403: not this device's image; 404: not published)", status);
        return false;
    }
    if (content_length != static_cast<long>(update.size)) {
        refuse(update, "the server sends %ld bytes, the announcement says %u", content_length,
               static_cast<unsigned>(update.size));
        return false;
    }
    return true;
}

// Anti-rollback, on the version the signed image carries: it must be the announced one, and not older than this
// firmware unless the announcement is a deliberate downgrade. Says why not.
bool version_acceptable(const esp_partition_t* staging, uint32_t signed_length, const ota_announcement_t& update) {
    char version[OTA_VERSION_RECORD_TEXT];
    if (!ota_image_version(staging, signed_length, ota_version_record, version)) {
        refuse(update, "the image carries no version record of a gen firmware");
        return false;
    }
    if (strcmp(version, update.version) != 0) {
        refuse(update, "the image says it is version %s", version);
        return false;
    }
    // A downgrade permission was verified by wanted() before this update was taken, for this sha256 and version.
    const char* problem = version_rollback_problem(version, FIRMWARE_VERSION, update.downgrade[0] != '\0');
    if (problem != nullptr) {
        refuse(update, "%s %s (a downgrade is announced with gen ota publish --allow-downgrade)", problem,
               FIRMWARE_VERSION);
        return false;
    }
    return true;
}

void install(const ota_announcement_t& update) {
    const esp_partition_t* staging = esp_ota_get_next_update_partition(nullptr);
    Serial.printf("[ota] downloading %s (%u bytes) into %s from %s\n", update.version,
                  static_cast<unsigned>(update.size), staging->label, update.url);
    report("downloading", "%s into %s", update.version, staging->label);
    if (update.size <= SIGNATURE_SECTOR || update.size % SIGNATURE_SECTOR != 0) {
        refuse(update, "%u bytes is not a signed image (those end in a 4 KB signature sector)",
               static_cast<unsigned>(update.size));
        return;
    }
    DateCheckingWiFiClientSecure client;          // gen ota serve has the broker's certificate: dates checked too
    client.setCACert(settings.ca_pem);            // the server must chain to our CA and carry the broker's name
    client.setCertificate(settings.cert_pem);
    client.setPrivateKey(settings.key_pem);
    client.setHandshakeTimeout(OTA_HANDSHAKE_TIMEOUT_S);
    if (!client.connect(OTA_HOST, OTA_PORT)) {
        char error[128] = "";
        const int code = client.lastError(error, sizeof error);
        refuse(update, "cannot reach the update server %s:%u (TLS error -0x%04x %s): is gen ota serve running?",
               OTA_HOST, OTA_PORT, static_cast<unsigned>(-code), error);
        return;
    }
    const char* path = update.url + sizeof OTA_URL_PREFIX - 2;     // from the '/' after the port
    client.printf("GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: gen-ota\r\nConnection: close\r\n\r\n", path,
                  OTA_HOST, OTA_PORT);
    if (!read_response_head(client, update)) {
        client.stop();
        return;
    }
    if (!Update.begin(update.size)) {
        refuse(update, "Update.begin: %s", Update.errorString());
        client.stop();
        return;
    }
    mbedtls_md_context_t whole, signed_part;      // the file; what the signature covers (all but its sector)
    mbedtls_md_init(&whole);
    mbedtls_md_init(&signed_part);
    const mbedtls_md_info_t* sha = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_setup(&whole, sha, 0);
    mbedtls_md_setup(&signed_part, sha, 0);
    mbedtls_md_starts(&whole);
    mbedtls_md_starts(&signed_part);
    const size_t signed_length = update.size - SIGNATURE_SECTOR;
    static uint8_t chunk[1024];
    size_t received = 0;
    int reported = -1;
    const char* problem = nullptr;
    // The first 16 bytes of the image header say what it is for: check them before writing a byte.
    size_t head = 0;
    while (head < 16 && problem == nullptr) {
        const size_t n = receive(client, chunk + head, 16 - head);
        head += n;
        problem = n == 0 ? "cut" : nullptr;
    }
    if (problem == nullptr && chunk[0] != 0xE9) {
        problem = "it is not an app image (no 0xE9 magic)";
    } else if (problem == nullptr && (chunk[12] | chunk[13] << 8) != OTA_CHIP_ID) {
        problem = "the image is for another chip";
    }
    while (received < update.size && problem == nullptr) {
        const size_t wanted = update.size - received < sizeof chunk ? update.size - received : sizeof chunk;
        const size_t n = received == 0 ? head : receive(client, chunk, wanted);
        if (n == 0) {
            problem = "cut";
            break;
        }
        if (Update.write(chunk, n) != n) {
            problem = Update.errorString();
            break;
        }
        mbedtls_md_update(&whole, chunk, n);
        if (received < signed_length) {
            mbedtls_md_update(&signed_part, chunk, n < signed_length - received ? n : signed_length - received);
        }
        for (size_t i = 0; i < n; ++i) {
            if (received + i >= signed_length) {
                signature_sector[received + i - signed_length] = chunk[i];
            }
        }
        received += n;
        const int percent = static_cast<int>(static_cast<uint64_t>(received) * 100 / update.size);
        if (percent / 10 != reported / 10) {
            reported = percent;
            Serial.printf("[ota] downloading %s: %d%%\n", update.version, percent);
        }
    }
    client.stop();
    uint8_t digest[32], signed_digest[32];
    mbedtls_md_finish(&whole, digest);
    mbedtls_md_finish(&signed_part, signed_digest);
    mbedtls_md_free(&whole);
    mbedtls_md_free(&signed_part);
    char hex[OTA_SHA256_HEX + 1];
    ota_hex(digest, sizeof digest, hex);
    if (problem == nullptr && strcmp(hex, update.sha256) != 0) {
        problem = "sha256 mismatch";
    }
    if (problem == nullptr) {
        problem = signature_problem(signed_digest);
    }
    if (problem != nullptr) {
        Update.abort();                           // the slot is left unbootable; nothing switches
        if (strcmp(problem, "cut") == 0) {
            refuse(update, "the download was cut at %u of %u bytes", static_cast<unsigned>(received),
                   static_cast<unsigned>(update.size));
        } else if (strcmp(problem, "sha256 mismatch") == 0) {
            refuse(update, "sha256 mismatch: %s received, %s announced", hex, update.sha256);
        } else {
            refuse(update, "%s", problem);
        }
        return;
    }
    Serial.printf("[ota] %s: %u bytes, sha256 %s, signed with this project's key\n", update.version,
                  static_cast<unsigned>(update.size), hex);
    if (!version_acceptable(staging, static_cast<uint32_t>(signed_length), update)) {
        Update.abort();
        return;
    }
    if (!Update.end()) {                          // checks the image (chip, checksum, hash), then switches the slot
        refuse(update, "Update.end: %s", Update.errorString());
        return;
    }
    Serial.printf("[ota] %s verified and installed in %s; rebooting into it\n", update.version, staging->label);
    report("installed", "%s in %s; rebooting", update.version, staging->label);
    mqtt->loop();
    delay(500);                                   // let the report leave
    ESP.restart();
}

// ---- Announcements ----------------------------------------------------------------------------------------

// Whether this device should fetch the announced image; says why not.
bool wanted(const ota_announcement_t& update) {
    if (strcmp(update.target, OTA_TARGET) != 0 || strcmp(update.project, OTA_PROJECT) != 0) {
        Serial.printf("[ota] ignored: the image is for %s of project %s; this is %s of %s\n", update.target,
                      update.project, OTA_TARGET, OTA_PROJECT);
        return false;
    }
    if (strcmp(update.version, FIRMWARE_VERSION) == 0) {
        Serial.printf("[ota] already running %s; nothing to do\n", FIRMWARE_VERSION);
        return false;
    }
    if (strncmp(update.url, OTA_URL_PREFIX, sizeof OTA_URL_PREFIX - 1) != 0) {
        Serial.printf("[ota] ignored: %s is not on the update server %s\n", update.url, OTA_URL_PREFIX);
        return false;
    }
    // A downgrade permission counts only once it verifies and holds: one forged, made for another device or image,
    // for a device running another version (a captured one replayed) or expired, is refused.
    if (update.downgrade[0] != '\0') {
        const char* forged = ota_downgrade_problem(&update, settings.device_id);
        if (forged != nullptr) {
            refuse(update, "its downgrade permission %s", forged);
            return false;
        }
    }
    const char* rollback = version_rollback_problem(update.version, FIRMWARE_VERSION, update.downgrade[0] != '\0');
    if (rollback != nullptr) {      // not fetched at all; the image's own version is checked again after download
        refuse(update, "%s %s (a downgrade is announced with gen ota publish --allow-downgrade)", rollback,
               FIRMWARE_VERSION);
        return false;
    }
    const esp_partition_t* staging = esp_ota_get_next_update_partition(nullptr);
    if (staging == nullptr || update.size > staging->size) {
        Serial.printf("[ota] ignored: %u bytes do not fit the other app slot\n", static_cast<unsigned>(update.size));
        return false;
    }
    if (on_trial) {
        Serial.printf("[ota] %s waits: this image is on trial until it has reached the broker\n", update.version);
        return false;
    }
    if (strcmp(update.sha256, refused_sha256) == 0) {
        Serial.printf("[ota] ignored: %s was refused already\n", update.version);
        return false;
    }
    // The image running already (whatever version the announcement gives it): nothing to do.
    char sha[OTA_SHA256_HEX + 1];
    if (ota_partition_sha256(running, update.size, sha) && strcmp(sha, update.sha256) == 0) {
        Serial.printf("[ota] ignored: that image is the one running from %s\n", running->label);
        return false;
    }
    // An image this device rolled back stays in the slot it was rolled back from: never boot it again.
    const esp_partition_t* rolled_back = esp_ota_get_last_invalid_partition();
    if (rolled_back != nullptr && ota_partition_sha256(rolled_back, update.size, sha) &&
        strcmp(sha, update.sha256) == 0) {
        Serial.printf("[ota] ignored: %s was rolled back on this device (it did not reach the broker)\n",
                      update.version);
        return false;
    }
    return true;
}

}  // namespace

bool ota_on_message(const char* topic, const uint8_t* payload, unsigned int length) {
    if (strcmp(topic, settings.ota_topic) != 0) {
        return false;
    }
    if (length == 0) {
        return true;                              // the retained announcement was cleared
    }
    Serial.printf("[mqtt] received %u bytes on %s\n", length, topic);
    if (length > OTA_ANNOUNCEMENT_CAPACITY) {
        Serial.printf("[ota] ignored an announcement of %u bytes: more than %u\n", length,
                      static_cast<unsigned>(OTA_ANNOUNCEMENT_CAPACITY));
        return true;
    }
    static ota_announcement_t update;             // 1.3 KB with a downgrade permission: kept off the loop task's stack
    const char* problem = ota_parse_announcement(reinterpret_cast<const char*>(payload), length, &update);
    if (problem != nullptr) {
        Serial.printf("[ota] ignored an announcement: %s\n", problem);
        return true;
    }
    Serial.printf("[ota] announced: %s (%u bytes, sha256 %s); running %s\n", update.version,
                  static_cast<unsigned>(update.size), update.sha256, FIRMWARE_VERSION);
    if (wanted(update)) {
        pending = update;                         // run from loop(), outside PubSubClient's callback
        update_pending = true;
    }
    return true;
}

void ota_begin(const OtaSettings& config, PubSubClient& client) {
    settings = config;
    mqtt = &client;
    running = esp_ota_get_running_partition();
    esp_ota_img_states_t state;
    on_trial = esp_ota_get_state_partition(running, &state) == ESP_OK && state == ESP_OTA_IMG_PENDING_VERIFY;
    Serial.printf("[ota] firmware %s running from %s%s\n", FIRMWARE_VERSION, running->label,
                  on_trial ? ": a new image on trial" : "");
    if (on_trial) {
        Serial.printf("[ota] it is kept once it reaches the broker, rolled back if it has not within %lu s\n",
                      static_cast<unsigned long>(OTA_CONFIRM_TIMEOUT_MS / 1000));
    }
    const esp_partition_t* rolled_back = esp_ota_get_last_invalid_partition();
    if (rolled_back != nullptr) {
        Serial.printf("[ota] the image in %s was rolled back: it did not reach the broker\n", rolled_back->label);
    }
}

void ota_on_connected() {
    if (on_trial) {
        const esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
        if (err == ESP_OK) {
            on_trial = false;
            confirmed_now = true;
            Serial.printf("[ota] %s reached the broker: confirmed, no rollback\n", FIRMWARE_VERSION);
        } else {
            Serial.printf("[ota] cannot confirm %s: %s\n", FIRMWARE_VERSION, esp_err_to_name(err));
        }
    }
    if (confirmed_now) {
        report("confirmed", "%s reached the broker", FIRMWARE_VERSION);
    } else if (esp_ota_get_last_invalid_partition() != nullptr) {
        report("rolled_back", "the image in the other slot did not reach the broker");
    } else {
        report("running", "%s", on_trial ? "on trial" : "");
    }
    if (mqtt->subscribe(settings.ota_topic, OTA_QOS)) {
        Serial.printf("[ota] listening for updates on %s\n", settings.ota_topic);
    } else {
        Serial.printf("[mqtt] subscribe failed on %s\n", settings.ota_topic);
    }
}

void ota_loop(uint32_t now) {
    if (update_pending && mqtt->connected()) {
        update_pending = false;
        install(pending);
    }
    if (!on_trial || now < OTA_CONFIRM_TIMEOUT_MS) {
        return;
    }
    Serial.printf("[ota] %s did not reach the broker within %lu s: rolling back\n", FIRMWARE_VERSION,
                  static_cast<unsigned long>(OTA_CONFIRM_TIMEOUT_MS / 1000));
    const esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();
    // Only on failure (no valid image in the other slot's otadata): a reset still rolls back, since the
    // bootloader turns an image left PENDING_VERIFY into ABORTED.
    Serial.printf("[ota] esp_ota_mark_app_invalid_rollback_and_reboot: %s; restarting\n", esp_err_to_name(err));
    ESP.restart();
}

#endif  // GEN_LINK_OTA
