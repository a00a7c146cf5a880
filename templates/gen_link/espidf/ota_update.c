// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// Updates over the air. An announcement on the OTA topic is checked, then an update task downloads the image into
// the other app slot with esp_https_ota (the server verified against our CA, this device's certificate presented),
// checks its size and SHA-256 in flash, and lets esp_https_ota_finish check its signature and chip and switch the
// boot slot. After the reboot the bootloader runs the new image on trial (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE):
// it is marked valid once it has reached the broker, and rolled back if it has not within OTA_CONFIRM_TIMEOUT_MS
// or if it resets before. With CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK (security.secure_version) an image whose secure
// version is below the chip's eFuse is refused before it is downloaded: the bootloader would never boot it. Every
// step is logged in words; the state of an update goes to the firmware topic.

#include "gen_config.h"

#if GEN_LINK_OTA   // compiled only for a device that updates over the air

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_efuse.h"
#include "esp_err.h"
#include "esp_http_client.h"
#include "esp_https_ota.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_system.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "sdkconfig.h"

#include "ota_common.h"
#include "gen_ota_config.h"
#include "ota_update.h"

static const char *TAG = "ota";

static ota_settings_t settings;
static esp_mqtt_client_handle_t mqtt;          // set on the first connect
static QueueHandle_t announcements;            // of ota_announcement_t: the MQTT task hands them to the update task
static const esp_partition_t *running;
static volatile bool on_trial = false;         // this image is not confirmed yet (set by the MQTT task)
static bool confirmed_now = false;             // confirmed in this boot (reported once)
static char refused_sha256[OTA_SHA256_HEX + 1];  // the last image refused in this boot: not fetched again

// ---- Reporting --------------------------------------------------------------------------------------------

// {"version", "slot", "state", "detail"} on the firmware topic, retained, so `gen ota status` sees it.
static void report(const char *state, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void report(const char *state, const char *format, ...)
{
    if (mqtt == NULL) {
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
    if (esp_mqtt_client_publish(mqtt, settings.firmware_topic, payload, (int)length, OTA_QOS, 1) < 0) {
        ESP_LOGW(TAG, "[mqtt] publish failed on %s", settings.firmware_topic);
    } else {
        ESP_LOGI(TAG, "[mqtt] published %u bytes to %s", (unsigned)length, settings.firmware_topic);
    }
}

// ---- The update -------------------------------------------------------------------------------------------

static void refuse(const ota_announcement_t *update, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void refuse(const ota_announcement_t *update, const char *format, ...)
{
    char why[160];
    va_list args;
    va_start(args, format);
    vsnprintf(why, sizeof why, format, args);
    va_end(args);
    memcpy(refused_sha256, update->sha256, sizeof refused_sha256);
    ESP_LOGE(TAG, "[ota] refused %s: %s; keeping %s", update->version, why, FIRMWARE_VERSION);
    report("refused", "%s: %s", update->version, why);
}

static void install(const ota_announcement_t *update)
{
    const esp_partition_t *staging = esp_ota_get_next_update_partition(NULL);
    ESP_LOGI(TAG, "[ota] downloading %s (%" PRIu32 " bytes) into %s from %s", update->version, update->size,
             staging->label, update->url);
    report("downloading", "%s into %s", update->version, staging->label);
    const esp_http_client_config_t http = {
        .url = update->url,
        .cert_pem = settings.ca_pem,                 // the server must chain to our CA and carry the broker's name
        .client_cert_pem = settings.cert_pem,
        .client_key_pem = settings.key_pem,
        .timeout_ms = OTA_NETWORK_TIMEOUT_MS,
        .keep_alive_enable = true,
    };
    const esp_https_ota_config_t config = {.http_config = &http, .partition = {.staging = staging}};
    esp_https_ota_handle_t handle = NULL;
    esp_err_t err = esp_https_ota_begin(&config, &handle);
    if (err != ESP_OK) {
        refuse(update, "cannot fetch it (%s): is gen ota serve running, and does it have this image?",
               esp_err_to_name(err));
        return;
    }
    esp_app_desc_t description;
    err = esp_https_ota_get_img_desc(handle, &description);
    if (err != ESP_OK) {
        esp_https_ota_abort(handle);
        refuse(update, "it is not an app image (%s)", esp_err_to_name(err));
        return;
    }
    if (strncmp(description.version, update->version, sizeof description.version) != 0) {
        esp_https_ota_abort(handle);
        refuse(update, "the image says it is version %.32s", description.version);
        return;
    }
#ifdef CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
    // The bootloader never boots an image below the chip's eFuse secure version (esp_ota_set_boot_partition would
    // erase it): refused before the rest is downloaded, whatever downgrade permission came with it.
    if (!esp_efuse_check_secure_version(description.secure_version)) {
        esp_https_ota_abort(handle);
        refuse(update, "its secure version %" PRIu32 " is below this chip's %" PRIu32 " (eFuse): it could never boot",
               description.secure_version, esp_efuse_read_secure_version());
        return;
    }
#endif
    // Anti-rollback, on the version in the image (its signature is checked by esp_https_ota_finish).
    // A downgrade permission was verified by wanted() before this update was taken, for this sha256 and version.
    const char *rollback = version_rollback_problem(description.version, FIRMWARE_VERSION, update->downgrade[0] != '\0');
    if (rollback != NULL) {
        esp_https_ota_abort(handle);
        refuse(update, "%s %s (a downgrade is announced with gen ota publish --allow-downgrade)", rollback,
               FIRMWARE_VERSION);
        return;
    }
    const int served = esp_https_ota_get_image_size(handle);
    if (served >= 0 && (uint32_t)served != update->size) {
        esp_https_ota_abort(handle);
        refuse(update, "the server sends %d bytes, the announcement says %" PRIu32, served, update->size);
        return;
    }
    int reported = -1;
    while ((err = esp_https_ota_perform(handle)) == ESP_ERR_HTTPS_OTA_IN_PROGRESS) {
        const int percent = (int)((uint64_t)esp_https_ota_get_image_len_read(handle) * 100 / update->size);
        if (percent / 10 != reported / 10) {
            reported = percent;
            ESP_LOGI(TAG, "[ota] downloading %s: %d%%", update->version, percent);
        }
    }
    const int received = esp_https_ota_get_image_len_read(handle);
    if (err == ESP_ERR_INVALID_VERSION) {
        esp_https_ota_abort(handle);
        refuse(update, "the image is for another chip or chip revision");
        return;
    }
    if (err != ESP_OK || !esp_https_ota_is_complete_data_received(handle) || received != (int)update->size) {
        esp_https_ota_abort(handle);
        refuse(update, "the download was cut at %d of %" PRIu32 " bytes (%s)", received, update->size,
               esp_err_to_name(err));
        return;
    }
    // The bytes now in flash, not the ones that went past: their SHA-256 must be the announced one.
    char sha256[OTA_SHA256_HEX + 1];
    if (!ota_partition_sha256(staging, update->size, sha256) || strcmp(sha256, update->sha256) != 0) {
        esp_https_ota_abort(handle);
        refuse(update, "sha256 mismatch: %s in %s, %s announced", sha256, staging->label, update->sha256);
        return;
    }
    ESP_LOGI(TAG, "[ota] %s: %" PRIu32 " bytes, sha256 %s: as announced; checking its signature", update->version,
             update->size, sha256);
    err = esp_https_ota_finish(handle);          // esp_ota_end: image and signature; then the boot slot
    if (err == ESP_ERR_OTA_VALIDATE_FAILED) {
        refuse(update, "the image or its signature does not verify (not signed with this project's key?)");
        return;
    }
    if (err != ESP_OK) {
        refuse(update, "esp_https_ota_finish: %s", esp_err_to_name(err));
        return;
    }
    ESP_LOGI(TAG, "[ota] %s verified and installed in %s; rebooting into it", update->version, staging->label);
    report("installed", "%s in %s; rebooting", update->version, staging->label);
    vTaskDelay(pdMS_TO_TICKS(500));              // let the report leave
    esp_restart();
}

static bool wanted(const ota_announcement_t *update);

// The OTA task: each announcement is checked here, not in the MQTT task (a downgrade permission's RSA signature,
// the SHA-256 of an app slot: stack and time the MQTT task does not have), then installed.
static void update_task(void *arg)
{
    (void)arg;
    ota_announcement_t update;
    for (;;) {
        if (xQueueReceive(announcements, &update, portMAX_DELAY) == pdTRUE && wanted(&update)) {
            install(&update);
        }
    }
}

// ---- Announcements ----------------------------------------------------------------------------------------

// Whether this device should fetch the announced image; says why not.
static bool wanted(const ota_announcement_t *update)
{
    if (strcmp(update->target, OTA_TARGET) != 0 || strcmp(update->project, OTA_PROJECT) != 0) {
        ESP_LOGW(TAG, "[ota] ignored: the image is for %s of project %s; this is %s of %s", update->target,
                 update->project, OTA_TARGET, OTA_PROJECT);
        return false;
    }
    if (strcmp(update->version, FIRMWARE_VERSION) == 0) {
        ESP_LOGI(TAG, "[ota] already running %s; nothing to do", FIRMWARE_VERSION);
        return false;
    }
    if (strncmp(update->url, OTA_URL_PREFIX, sizeof OTA_URL_PREFIX - 1) != 0) {
        ESP_LOGE(TAG, "[ota] ignored: %s is not on the update server %s", update->url, OTA_URL_PREFIX);
        return false;
    }
    // A downgrade permission counts only once it verifies and holds: one forged, made for another device or image,
    // for a device running another version (a captured one replayed) or expired, is refused.
    if (update->downgrade[0] != '\0') {
        const char *forged = ota_downgrade_problem(update, settings.device_id);
        if (forged != NULL) {
            refuse(update, "its downgrade permission %s", forged);
            return false;
        }
    }
    const char *rollback = version_rollback_problem(update->version, FIRMWARE_VERSION, update->downgrade[0] != '\0');
    if (rollback != NULL) {      // not fetched at all; the image's own version is checked again before writing it
        refuse(update, "%s %s (a downgrade is announced with gen ota publish --allow-downgrade)", rollback,
               FIRMWARE_VERSION);
        return false;
    }
    const esp_partition_t *staging = esp_ota_get_next_update_partition(NULL);
    if (staging == NULL || update->size > staging->size) {
        ESP_LOGE(TAG, "[ota] ignored: %" PRIu32 " bytes do not fit the other app slot", update->size);
        return false;
    }
    if (on_trial) {
        ESP_LOGW(TAG, "[ota] %s waits: this image is on trial until it has reached the broker", update->version);
        return false;
    }
    if (strcmp(update->sha256, refused_sha256) == 0) {
        ESP_LOGW(TAG, "[ota] ignored: %s was refused already", update->version);
        return false;
    }
    // The image running already (whatever version the announcement gives it): nothing to do.
    char sha256[OTA_SHA256_HEX + 1];
    if (ota_partition_sha256(running, update->size, sha256) && strcmp(sha256, update->sha256) == 0) {
        ESP_LOGI(TAG, "[ota] ignored: that image is the one running from %s", running->label);
        return false;
    }
    // An image this device rolled back stays in the slot it was rolled back from: never boot it again.
    const esp_partition_t *rolled_back = esp_ota_get_last_invalid_partition();
    if (rolled_back != NULL && ota_partition_sha256(rolled_back, update->size, sha256)
            && strcmp(sha256, update->sha256) == 0) {
        ESP_LOGW(TAG, "[ota] ignored: %s was rolled back on this device (it did not reach the broker)",
                 update->version);
        return false;
    }
    return true;
}

bool ota_on_message(const esp_mqtt_event_t *event)
{
    const size_t topic_length = strlen(settings.ota_topic);
    if ((size_t)event->topic_len != topic_length || memcmp(event->topic, settings.ota_topic, topic_length) != 0) {
        return false;
    }
    if (event->current_data_offset != 0) {
        return true;                             // the rest of an announcement already dropped below
    }
    if (event->total_data_len == 0) {
        return true;                             // the retained announcement was cleared
    }
    ESP_LOGI(TAG, "[mqtt] received %d bytes on %s", event->total_data_len, settings.ota_topic);
    if (event->data_len != event->total_data_len || event->total_data_len > OTA_ANNOUNCEMENT_CAPACITY) {
        ESP_LOGE(TAG, "[ota] ignored an announcement of %d bytes: more than %d", event->total_data_len,
                 OTA_ANNOUNCEMENT_CAPACITY);
        return true;
    }
    static ota_announcement_t update;            // the MQTT task's own
    const char *problem = ota_parse_announcement(event->data, (size_t)event->data_len, &update);
    if (problem != NULL) {
        ESP_LOGE(TAG, "[ota] ignored an announcement: %s", problem);
        return true;
    }
    ESP_LOGI(TAG, "[ota] announced: %s (%" PRIu32 " bytes, sha256 %s); running %s", update.version, update.size,
             update.sha256, FIRMWARE_VERSION);
    if (xQueueSend(announcements, &update, 0) != pdTRUE) {     // checked and installed by the OTA task
        ESP_LOGW(TAG, "[ota] an update is already under way; %s ignored", update.version);
    }
    return true;
}

// ---- Boot and trial ---------------------------------------------------------------------------------------

void ota_start(const ota_settings_t *config)
{
    settings = *config;
    running = esp_ota_get_running_partition();
    esp_ota_img_states_t state;
    on_trial = esp_ota_get_state_partition(running, &state) == ESP_OK && state == ESP_OTA_IMG_PENDING_VERIFY;
    ESP_LOGI(TAG, "[ota] firmware %s running from %s%s", FIRMWARE_VERSION, running->label,
             on_trial ? ": a new image on trial" : "");
    if (on_trial) {
        ESP_LOGI(TAG, "[ota] it is kept once it reaches the broker, rolled back if it has not within %d s",
                 OTA_CONFIRM_TIMEOUT_MS / 1000);
    }
#ifdef CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
    ESP_LOGI(TAG, "[ota] anti-rollback: this image's secure version %" PRIu32 ", this chip's %" PRIu32 " (eFuse)",
             esp_app_get_description()->secure_version, esp_efuse_read_secure_version());
#endif
    const esp_partition_t *rolled_back = esp_ota_get_last_invalid_partition();
    esp_app_desc_t description;
    if (rolled_back != NULL && esp_ota_get_partition_description(rolled_back, &description) == ESP_OK) {
        ESP_LOGW(TAG, "[ota] %.32s in %s was rolled back: it did not reach the broker", description.version,
                 rolled_back->label);
    }
    announcements = xQueueCreate(1, sizeof(ota_announcement_t));
    if (announcements == NULL || xTaskCreate(update_task, "ota", OTA_TASK_STACK, NULL, 5, NULL) != pdPASS) {
        ESP_LOGE(TAG, "[ota] cannot start the update task: out of memory; updates are off");
    }
}

void ota_on_connected(esp_mqtt_client_handle_t client)
{
    mqtt = client;
    if (on_trial) {
        const esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
        if (err == ESP_OK) {
            on_trial = false;
            confirmed_now = true;
            ESP_LOGI(TAG, "[ota] %s reached the broker: confirmed, no rollback", FIRMWARE_VERSION);
        } else {
            ESP_LOGE(TAG, "[ota] cannot confirm %s: %s", FIRMWARE_VERSION, esp_err_to_name(err));
        }
    }
    if (confirmed_now) {
        report("confirmed", "%s reached the broker", FIRMWARE_VERSION);
    } else if (esp_ota_get_last_invalid_partition() != NULL) {
        report("rolled_back", "the image in the other slot did not reach the broker");
    } else {
        report("running", "%s", on_trial ? "on trial" : "");
    }
    if (esp_mqtt_client_subscribe(client, settings.ota_topic, OTA_QOS) < 0) {
        ESP_LOGE(TAG, "[mqtt] subscribe failed on %s", settings.ota_topic);
    } else {
        ESP_LOGI(TAG, "[ota] listening for updates on %s", settings.ota_topic);
    }
}

void ota_check_trial(uint32_t now_ms)
{
    if (!on_trial || now_ms < OTA_CONFIRM_TIMEOUT_MS) {
        return;
    }
    ESP_LOGE(TAG, "[ota] %s did not reach the broker within %d s: rolling back", FIRMWARE_VERSION,
             OTA_CONFIRM_TIMEOUT_MS / 1000);
    const esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();
    // Only on failure (no valid image in the other slot's otadata): a reset still rolls back, since the
    // bootloader turns an image left PENDING_VERIFY into ABORTED.
    ESP_LOGE(TAG, "[ota] esp_ota_mark_app_invalid_rollback_and_reboot: %s; restarting", esp_err_to_name(err));
    esp_restart();
}

#endif  // GEN_LINK_OTA
