#include "soil_moisture.h"

int soil_moisture_percent(int raw)
{
    const int dry = 3000, wet = 1200;
    if (raw >= dry) {
        return 0;
    }
    if (raw <= wet) {
        return 100;
    }
    return (dry - raw) * 100 / (dry - wet);
}
