// The soil sensor: a capacitive probe on an ADC pin (the pin is a var: of each device).
#pragma once

#include <stdint.h>

void soil_begin(uint8_t pin);
int soil_percent();
