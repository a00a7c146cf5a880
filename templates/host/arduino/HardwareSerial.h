// HardwareSerial.h (arduino-esp32 2.0.17 API) for the host runtime: Serial writes to stdout and reads
// stdin without blocking. The baud rate is accepted and ignored.
#pragma once

#include "Stream.h"

class HardwareSerial : public Stream {
public:
    explicit HardwareSerial(int uart_nr) : uart_nr_(uart_nr) {}
    void begin(unsigned long baud, uint32_t config = 0x800001c, int8_t rxPin = -1, int8_t txPin = -1,
               bool invert = false, unsigned long timeout_ms = 20000UL, uint8_t rxfifo_full_thrhd = 112);
    void end(bool fullyTerminate = true);
    int available(void) override;
    int availableForWrite(void) override { return 128; }
    int peek(void) override;
    int read(void) override;
    size_t read(uint8_t *buffer, size_t size);
    size_t read(char *buffer, size_t size) { return read(reinterpret_cast<uint8_t *>(buffer), size); }
    void flush(void) override;
    void flush(bool txOnly) { (void)txOnly; flush(); }
    size_t write(uint8_t) override;
    size_t write(const uint8_t *buffer, size_t size) override;
    using Print::write;
    void setDebugOutput(bool) {}
    uint32_t baudRate() { return baud_; }
    operator bool() const { return true; }

private:
    int uart_nr_;
    uint32_t baud_ = 115200;
    int peeked_ = -1;
};

extern HardwareSerial Serial;
extern HardwareSerial Serial1;
extern HardwareSerial Serial2;
