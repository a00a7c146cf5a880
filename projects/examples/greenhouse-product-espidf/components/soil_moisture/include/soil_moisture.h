#pragma once

// Percent of water from a capacitive sensor's raw 12-bit ADC reading (dry 3000, wet 1200).
int soil_moisture_percent(int raw);
