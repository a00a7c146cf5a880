#pragma once

#include <stdbool.h>

// One WS2812 pixel (the DevKit's RGB LED) that says how the greenhouse is: green while the soil is moist enough,
// red when it is too dry. Through the LED strip driver of the ESP-IDF component registry (libraries: in device.yaml).
void status_light_begin(void);
void status_light_show(bool dry);
