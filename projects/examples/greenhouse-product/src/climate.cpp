// The BME280 through Adafruit's driver, a library from the PlatformIO registry (libraries: in device.yaml).
// gen simulate's host build cannot have a registry library (it compiles for Linux, offline) and defines
// GEN_HOST_BUILD: there this file reports a steady stand-in climate instead, so the rest of the app runs unchanged.

#include "climate.h"

#include <Arduino.h>

#include "gen_link.h"

#ifndef CLIMATE_I2C_ADDRESS
#define CLIMATE_I2C_ADDRESS 0x76   // build_flags: in device.yaml sets it
#endif

#ifndef GEN_HOST_BUILD
#include <Adafruit_BME280.h>

static Adafruit_BME280 bme;
static bool found = false;

void climate_begin() {
    found = bme.begin(CLIMATE_I2C_ADDRESS);
    if (!found) {
        // An error line on the port, and on the device's log topic when the spec turns on log: (gen logs).
        gen_link_log(GEN_LINK_LOG_ERROR, "[climate] no BME280 at 0x%02x; check the wiring", CLIMATE_I2C_ADDRESS);
    }
}

bool climate_read(ClimateReading* reading) {
    if (!found) {
        return false;
    }
    reading->temperature_c = bme.readTemperature();
    reading->humidity_pct = bme.readHumidity();
    reading->pressure_hpa = bme.readPressure() / 100.0f;
    return true;
}
#else
void climate_begin() {
    Serial.printf("[climate] host build: a stand-in BME280 at 0x%02x\n", CLIMATE_I2C_ADDRESS);
}

bool climate_read(ClimateReading* reading) {
    reading->temperature_c = 24.5f;
    reading->humidity_pct = 61.0f;
    reading->pressure_hpa = 1013.2f;
    return true;
}
#endif
