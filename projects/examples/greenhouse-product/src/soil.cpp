// Reads the probe and turns the raw value into percent with the project's own library (lib/soil_moisture).

#include "soil.h"

#include <Arduino.h>
#include <soil_moisture.h>

static uint8_t soil_pin = 34;

void soil_begin(uint8_t pin) {
    soil_pin = pin;
    analogReadResolution(12);
}

int soil_percent() {
    return soil_moisture_percent(analogRead(soil_pin));
}
