#pragma once

#include <stdbool.h>

// The soil probe on one channel of ADC unit 1; its reading in percent of water (components/soil_moisture).
bool soil_begin(int channel);
int soil_percent(void);   // -1 when the ADC did not answer
