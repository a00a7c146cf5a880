// The greenhouse controller: what it sends and how it answers. The hooks gen_link calls are declared in app.h;
// each sensor lives in a file of its own (climate.cpp, soil.cpp), and this file only puts them together.

#include <Arduino.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "climate.h"
#include "soil.h"

void app_setup() {
    const gen_vars_t* vars = gen_vars();
    Serial.printf("[app] %s: soil sensor on pin %ld\n", vars->room, static_cast<long>(vars->soil_pin));
    climate_begin();
    soil_begin(static_cast<uint8_t>(vars->soil_pin));
}

void app_loop() {
}

int app_build_telemetry(char* payload, size_t capacity) {
    ClimateReading climate;
    if (!climate_read(&climate)) {
        return -1;  // nothing to send this time: the sensor did not answer
    }
    const gen_vars_t* vars = gen_vars();
    int length = snprintf(payload, capacity, "{\"room\":\"%s\",\"temperature_c\":%.1f,\"humidity_pct\":%.0f,"
                          "\"soil_pct\":%d", vars->room, climate.temperature_c, climate.humidity_pct,
                          soil_percent());
    if (length > 0 && static_cast<size_t>(length) < capacity && vars->report_pressure) {
        length += snprintf(payload + length, capacity - length, ",\"pressure_hpa\":%.1f", climate.pressure_hpa);
    }
    if (length > 0 && static_cast<size_t>(length) < capacity) {
        length += snprintf(payload + length, capacity - length, "}");
    }
    return length;
}

void app_on_command(const char* topic, const uint8_t* payload, size_t length) {
    Serial.printf("[app] command on %s: %.*s\n", topic, static_cast<int>(length), reinterpret_cast<const char*>(payload));
    publish_ack(payload, length);  // acknowledge by echoing the payload
}
