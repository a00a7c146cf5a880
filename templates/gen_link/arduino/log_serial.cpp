// gen_link's serial console with the log over MQTT: see log_serial.h.
#include "gen_config.h"

#if GEN_LINK_LOG

#include "log_serial.h"
#include "log_publish.h"

LogSerial log_serial;

size_t LogSerial::write(uint8_t byte) {
    return write(&byte, 1);
}

size_t LogSerial::write(const uint8_t *buffer, size_t size) {
    const size_t written = Serial.write(buffer, size);
    for (size_t i = 0; i < size; i++) {
        const char c = static_cast<char>(buffer[i]);
        if (c == '\n') {
            size_t length = length_;
            while (length > 0 && line_[length - 1] == '\r') {
                length--;
            }
            log_publish_take(log_publish_level_of(line_, length), line_, length, millis());
            length_ = 0;
        } else if (length_ < sizeof line_) {
            line_[length_++] = c;
        }
    }
    return written;
}

#endif  // GEN_LINK_LOG
