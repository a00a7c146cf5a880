// The climate sensor: a Bosch BME280 on I2C (temperature, humidity, pressure).
#pragma once

struct ClimateReading {
    float temperature_c;
    float humidity_pct;
    float pressure_hpa;
};

void climate_begin();
bool climate_read(ClimateReading* reading);
