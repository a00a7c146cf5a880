// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// Updates over the air: the handler of this device's OTA topic (gen ota publish), the download into the other app
// slot with esp_https_ota over mutual TLS, the checks before the switch, and the trial of a new image, which is kept
// only once it has reached the broker. Used by main.c.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "mqtt_client.h"

typedef struct {
    const char *device_id;           // this device: a downgrade permission must name it
    const char *ca_pem;              // verifies the update server (it serves the broker's certificate)
    const char *cert_pem;            // this device's certificate and key: the server gives it only its own images
    const char *key_pem;
    const char *ota_topic;           // announcements (only gen's OTA identity may write it)
    const char *firmware_topic;      // where this device reports its version and the state of an update
} ota_settings_t;

// Once at boot, before WiFi: which slot runs, whether it is on trial, whether the last update was rolled back;
// starts the update task. The strings must stay valid for the life of the program.
void ota_start(const ota_settings_t *settings);

// On the MQTT task, after the birth message: confirms an image on trial (it reached the broker), reports the
// running version and subscribes to the OTA topic.
void ota_on_connected(esp_mqtt_client_handle_t client);

// On the MQTT task, for every message: true when it was an announcement (handled here), false for the app's.
bool ota_on_message(const esp_mqtt_event_t *event);

// From the main loop: an image on trial that has not reached the broker within OTA_CONFIRM_TIMEOUT_MS is rolled back.
void ota_check_trial(uint32_t now_ms);
