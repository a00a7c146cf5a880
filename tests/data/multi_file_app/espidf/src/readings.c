// A second source file of the app, using the project's own component (components/soil_moisture).
#include "readings.h"

#include <stdio.h>

#include "soil_moisture.h"

static int raw_reading = 2100;

void readings_begin(void)
{
    raw_reading = 2100;
}

int readings_format(char *payload, size_t capacity)
{
    return snprintf(payload, capacity, "{\"soil_pct\":%d}", soil_moisture_percent(raw_reading));
}
