// gen_link's serial console with the log over MQTT (the spec's `log:`): every byte goes to Serial as before, and
// each complete line goes to log_publish (log_publish.h), which keeps those at LOG_LEVEL for the log topic. The
// Arduino core gives no hook on Serial, so gen_link's sources print through this object (a #define there); lines
// are of level info (gen_link's Arduino lines carry no level). Lines two tasks print at once may be joined.
#pragma once

#include <Arduino.h>

#include "gen_config.h"

class LogSerial : public Print {
public:
    void begin(unsigned long baud) { Serial.begin(baud); }
    size_t write(uint8_t byte) override;
    size_t write(const uint8_t *buffer, size_t size) override;
    using Print::write;

private:
    char line_[LOG_LINE_CAPACITY];
    size_t length_ = 0;    // a longer line keeps its first LOG_LINE_CAPACITY bytes
};

extern LogSerial log_serial;
