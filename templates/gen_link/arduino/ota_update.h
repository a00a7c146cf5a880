// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// Updates over the air: the handler of this device's OTA topic (gen ota publish), the download into the other app
// slot with Update over a WiFiClientSecure of its own (mutual TLS), the checks before the switch (size, SHA-256,
// signature), and the trial of a new image, which is kept only once it has reached the broker. Used by main.cpp.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <PubSubClient.h>

struct OtaSettings {
    const char* device_id;           // this device: a downgrade permission must name it
    const char* ca_pem;              // verifies the update server (it serves the broker's certificate)
    const char* cert_pem;            // this device's certificate and key: the server gives it only its own images
    const char* key_pem;
    const char* ota_topic;           // announcements (only gen's OTA identity may write it)
    const char* firmware_topic;      // where this device reports its version and the state of an update
};

// Once in setup(): which slot runs, whether it is on trial, whether the last update was rolled back. The strings
// must stay valid for the life of the program.
void ota_begin(const OtaSettings& settings, PubSubClient& mqtt);

// After the birth message: confirms an image on trial (it reached the broker), reports the running version and
// subscribes to the OTA topic.
void ota_on_connected();

// For every message: true when it was an announcement (handled here), false for the app's.
bool ota_on_message(const char* topic, const uint8_t* payload, unsigned int length);

// From loop(): runs an announced update (the download keeps the MQTT session alive), and rolls back an image on
// trial that has not reached the broker within OTA_CONFIRM_TIMEOUT_MS.
void ota_loop(uint32_t now);
