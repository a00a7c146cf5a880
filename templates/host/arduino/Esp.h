// Esp.h (arduino-esp32 2.0.17 API) for the host runtime. Heap figures are fixed plausible values
// (the process heap is not the device's); restart() exits the process with code 3.
#pragma once

#include <stdint.h>

class EspClass {
public:
    uint16_t getVcc() { return 3300; }
    uint32_t getHeapSize() { return 327680; }
    uint32_t getFreeHeap() { return 250000; }
    uint32_t getMinFreeHeap() { return 240000; }
    uint32_t getMaxAllocHeap() { return 110592; }
    uint32_t getPsramSize() { return 0; }
    uint32_t getFreePsram() { return 0; }
    uint8_t getChipRevision() { return 3; }
    const char *getChipModel() { return "ESP32-D0WD-V3"; }
    uint8_t getChipCores() { return 2; }
    uint32_t getCpuFreqMHz() { return 240; }
    const char *getSdkVersion();
    uint32_t getFlashChipSize() { return 4 * 1024 * 1024; }
    uint32_t getSketchSize() { return 1024 * 1024; }
    uint32_t getFreeSketchSpace() { return 1310720; }
    uint64_t getEfuseMac();
    void restart() __attribute__((noreturn));
    void deepSleep(uint32_t time_us) __attribute__((noreturn));
};

extern EspClass ESP;
