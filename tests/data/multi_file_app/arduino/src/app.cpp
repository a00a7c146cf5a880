// The first file of a multi-file Arduino app: the hooks app.h declares, built from the other files and a library.
#include <Arduino.h>

#include "app.h"
#include "readings.h"

void app_setup() {
    readings_begin();
}

void app_loop() {
}

int app_build_telemetry(char* payload, size_t capacity) {
    return readings_format(payload, capacity);
}

void app_on_command(const char* topic, const uint8_t* payload, size_t length) {
    Serial.printf("[app] command on %s\n", topic);
    publish_ack(payload, length);
}
