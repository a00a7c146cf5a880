// Arduino.h (arduino-esp32 2.0.17 API) for the host runtime. setup() and loop() are driven by the
// runtime's main(); loop() runs again at once, after a ~1 ms sleep when an iteration took < 1 ms.
// GPIO and ADC calls are accepted and do nothing visible (digitalRead returns the last write).
#pragma once

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "sdkconfig.h"
#include "esp_system.h"
#include "esp_err.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "freertos/semphr.h"
#include "freertos/queue.h"
#include "freertos/event_groups.h"

#include "WString.h"
#include "Print.h"
#include "Stream.h"
#include "Printable.h"
#include "IPAddress.h"
#include "HardwareSerial.h"
#include "Esp.h"

#define ARDUINO_ESP32_RELEASE "2_0_17"
#define ESP_ARDUINO_VERSION_MAJOR 2
#define ESP_ARDUINO_VERSION_MINOR 0
#define ESP_ARDUINO_VERSION_PATCH 17
#define ESP_ARDUINO_VERSION_VAL(major, minor, patch) ((major << 16) | (minor << 8) | (patch))
#define ESP_ARDUINO_VERSION ESP_ARDUINO_VERSION_VAL(2, 0, 17)

#define HIGH 0x1
#define LOW 0x0
#define INPUT 0x01
#define OUTPUT 0x03
#define PULLUP 0x04
#define INPUT_PULLUP 0x05
#define PULLDOWN 0x08
#define INPUT_PULLDOWN 0x09
#define OPEN_DRAIN 0x10
#define OUTPUT_OPEN_DRAIN 0x12
#define LED_BUILTIN 2
#define RISING 0x01
#define FALLING 0x02
#define CHANGE 0x03

#define PI 3.1415926535897932384626433832795
#define HALF_PI 1.5707963267948966192313216916398
#define TWO_PI 6.283185307179586476925286766559
#define DEG_TO_RAD 0.017453292519943295769236907684886
#define RAD_TO_DEG 57.295779513082320876798154814105
#define EULER 2.718281828459045235360287471352

#define SERIAL 0x0
#define DISPLAY 0x1
#define LSBFIRST 0
#define MSBFIRST 1

#define radians(deg) ((deg) * DEG_TO_RAD)
#define degrees(rad) ((rad) * RAD_TO_DEG)
#define sq(x) ((x) * (x))
#define lowByte(w) ((uint8_t)((w) & 0xff))
#define highByte(w) ((uint8_t)((w) >> 8))
#define bitRead(value, bit) (((value) >> (bit)) & 0x01)
#define bitSet(value, bit) ((value) |= (1UL << (bit)))
#define bitClear(value, bit) ((value) &= ~(1UL << (bit)))
#define bitWrite(value, bit, bitvalue) ((bitvalue) ? bitSet(value, bit) : bitClear(value, bit))
#define bit(b) (1UL << (b))
#define _BV(b) (1UL << (b))
#define clockCyclesPerMicrosecond() ((long int)240)
#define interrupts() do {} while (0)
#define noInterrupts() do {} while (0)
#define PROGMEM
#define PGM_P const char *
#define PSTR(s) (s)
#define pgm_read_byte(addr) (*(const unsigned char *)(addr))
#define pgm_read_word(addr) (*(const unsigned short *)(addr))
#define pgm_read_dword(addr) (*(const unsigned long *)(addr))
#define strlen_P strlen
#define strcpy_P strcpy
#define strncpy_P strncpy
#define strcmp_P strcmp
#define memcpy_P memcpy
#define sprintf_P sprintf
#define snprintf_P snprintf

#ifndef CORE_DEBUG_LEVEL
#define CORE_DEBUG_LEVEL 0
#endif
#define ARDUHAL_LOG_LEVEL_NONE 0
#define ARDUHAL_LOG_LEVEL_ERROR 1
#define ARDUHAL_LOG_LEVEL_WARN 2
#define ARDUHAL_LOG_LEVEL_INFO 3
#define ARDUHAL_LOG_LEVEL_DEBUG 4
#define ARDUHAL_LOG_LEVEL_VERBOSE 5
#define ARDUHAL_LOG_FORMAT(letter, format) "[%6" PRIu32 "][" #letter "][%s:%u] %s(): " format "\r\n", \
    (uint32_t)millis(), __FILE__, __LINE__, __func__
#define ARDUHAL_LOG_AT(level, letter, format, ...) do { \
        if (CORE_DEBUG_LEVEL >= level) printf(ARDUHAL_LOG_FORMAT(letter, format), ##__VA_ARGS__); } while (0)
#define log_e(format, ...) ARDUHAL_LOG_AT(ARDUHAL_LOG_LEVEL_ERROR, E, format, ##__VA_ARGS__)
#define log_w(format, ...) ARDUHAL_LOG_AT(ARDUHAL_LOG_LEVEL_WARN, W, format, ##__VA_ARGS__)
#define log_i(format, ...) ARDUHAL_LOG_AT(ARDUHAL_LOG_LEVEL_INFO, I, format, ##__VA_ARGS__)
#define log_d(format, ...) ARDUHAL_LOG_AT(ARDUHAL_LOG_LEVEL_DEBUG, D, format, ##__VA_ARGS__)
#define log_v(format, ...) ARDUHAL_LOG_AT(ARDUHAL_LOG_LEVEL_VERBOSE, V, format, ##__VA_ARGS__)

typedef bool boolean;
typedef uint8_t byte;
typedef unsigned int word;

using std::max;
using std::min;
using std::isinf;
using std::isnan;
#define _min(a, b) ((a) < (b) ? (a) : (b))
#define _max(a, b) ((a) > (b) ? (a) : (b))
#define constrain(amt, low, high) ((amt) < (low) ? (low) : ((amt) > (high) ? (high) : (amt)))

extern "C" {
unsigned long millis(void);
unsigned long micros(void);
void delay(uint32_t ms);
void delayMicroseconds(uint32_t us);
void yield(void);
void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t val);
int digitalRead(uint8_t pin);
uint16_t analogRead(uint8_t pin);
void analogWrite(uint8_t pin, int value);
void analogReadResolution(uint8_t bits);
float temperatureRead(void);
void attachInterrupt(uint8_t pin, void (*)(void), int mode);
void detachInterrupt(uint8_t pin);
bool setCpuFrequencyMhz(uint32_t cpu_freq_mhz);
uint32_t getCpuFrequencyMhz(void);

/* Starts SNTP (simulated: the host clock, "synchronised" ~200 ms later) and sets TZ like the core. */
void configTime(long gmtOffset_sec, int daylightOffset_sec, const char *server1, const char *server2 = nullptr,
                const char *server3 = nullptr);
void configTzTime(const char *tz, const char *server1, const char *server2 = nullptr, const char *server3 = nullptr);
/* Polls until SNTP has synchronised (never, without configTime: then false after ms). */
bool getLocalTime(struct tm *info, uint32_t ms = 5000);
}

long random(long max);
long random(long min, long max);
void randomSeed(unsigned long seed);
long map(long x, long in_min, long in_max, long out_min, long out_max);
uint16_t makeWord(uint16_t w);
uint16_t makeWord(uint8_t h, uint8_t l);

void setup(void);
void loop(void);
