// Host runtime: Arduino core basics (time, Serial, String, Print/Stream, IPAddress, ESP, SNTP time,
// GPIO stand-ins).
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "Arduino.h"
#include "IPAddress.h"
#include "gen_sim.h"

// ---- time ----------------------------------------------------------------------------------------

extern "C" unsigned long millis(void) { return gen_sim_millis(); }
extern "C" unsigned long micros(void) { return static_cast<unsigned long>(gen_sim_micros()); }
extern "C" void delay(uint32_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
extern "C" void delayMicroseconds(uint32_t us) { std::this_thread::sleep_for(std::chrono::microseconds(us)); }
extern "C" void yield(void) { std::this_thread::yield(); }

// ---- GPIO / ADC stand-ins ------------------------------------------------------------------------

namespace {
std::atomic<uint8_t> pin_levels[64];
}
extern "C" void pinMode(uint8_t, uint8_t) {}
extern "C" void digitalWrite(uint8_t pin, uint8_t val) { if (pin < 64) pin_levels[pin] = val ? HIGH : LOW; }
extern "C" int digitalRead(uint8_t pin) { return pin < 64 ? pin_levels[pin].load() : LOW; }
extern "C" uint16_t analogRead(uint8_t pin) { return static_cast<uint16_t>(1800 + (pin * 37 + millis() / 1000) % 200); }
extern "C" void analogWrite(uint8_t, int) {}
extern "C" void analogReadResolution(uint8_t) {}
extern "C" float temperatureRead(void) { return 47.5f; }
extern "C" void attachInterrupt(uint8_t, void (*)(void), int) {}
extern "C" void detachInterrupt(uint8_t) {}
extern "C" bool setCpuFrequencyMhz(uint32_t) { return true; }
extern "C" uint32_t getCpuFrequencyMhz(void) { return 240; }

long random(long max) { return max <= 0 ? 0 : static_cast<long>(esp_random() % static_cast<unsigned long>(max)); }
long random(long min, long max) { return min >= max ? min : min + random(max - min); }
void randomSeed(unsigned long) {}
long map(long x, long in_min, long in_max, long out_min, long out_max) {
    if (in_max == in_min) return out_min;
    return (x - in_min) * (out_max - out_min) / (in_max - in_min) + out_min;
}
uint16_t makeWord(uint16_t w) { return w; }
uint16_t makeWord(uint8_t h, uint8_t l) { return static_cast<uint16_t>((h << 8) | l); }

// ---- SNTP time (esp32-hal-time.c) ------------------------------------------------------------------

namespace {
std::mutex time_mutex;
bool sntp_started = false;
unsigned long sntp_synced_at = 0;

void start_sntp() {
    std::lock_guard<std::mutex> lock(time_mutex);
    sntp_started = true;
    sntp_synced_at = millis() + 200;
}

// TZ for a fixed offset, POSIX sign convention (east of UTC is negative), as the core builds it.
void set_fixed_timezone(long offset_east, int daylight) {
    long west = -offset_east;
    char tz[64];
    char sign = west < 0 ? '-' : '+';
    long a = west < 0 ? -west : west;
    if (daylight) {
        long dst = west - daylight;
        char dsign = dst < 0 ? '-' : '+';
        long d = dst < 0 ? -dst : dst;
        snprintf(tz, sizeof tz, "UTC%c%ld:%02ld:%02ldDST%c%ld:%02ld:%02ld", sign, a / 3600, (a % 3600) / 60, a % 60,
                 dsign, d / 3600, (d % 3600) / 60, d % 60);
    } else {
        snprintf(tz, sizeof tz, "UTC%c%ld:%02ld:%02ld", sign, a / 3600, (a % 3600) / 60, a % 60);
    }
    setenv("TZ", tz, 1);
    tzset();
}
}  // namespace

extern "C" void configTime(long gmtOffset_sec, int daylightOffset_sec, const char*, const char*, const char*) {
    set_fixed_timezone(gmtOffset_sec, daylightOffset_sec);
    start_sntp();
}

extern "C" void configTzTime(const char* tz, const char*, const char*, const char*) {
    if (tz) {
        setenv("TZ", tz, 1);
        tzset();
    }
    start_sntp();
}

extern "C" bool getLocalTime(struct tm* info, uint32_t ms) {
    uint32_t start = millis();
    for (;;) {
        bool synced;
        {
            std::lock_guard<std::mutex> lock(time_mutex);
            synced = sntp_started && millis() >= sntp_synced_at && gen_sim_have_ip() && gen_sim_time_source_answers();
        }
        if (synced) {
            time_t now = time(nullptr);
            localtime_r(&now, info);
            return true;
        }
        if (millis() - start >= ms) return false;
        delay(10);
    }
}

// ---- ESP -------------------------------------------------------------------------------------------

EspClass ESP;
const char* EspClass::getSdkVersion() { return esp_get_idf_version(); }
uint64_t EspClass::getEfuseMac() {
    uint8_t mac[6];
    gen_sim_mac(mac);
    uint64_t v = 0;
    for (int i = 5; i >= 0; i--) v = (v << 8) | mac[i];
    return v;
}
void EspClass::restart() { gen_sim_restart("ESP.restart()"); }
void EspClass::deepSleep(uint32_t) { gen_sim_restart("ESP.deepSleep()"); }

// ---- Print / Stream ----------------------------------------------------------------------------------

size_t Print::write(const uint8_t* buffer, size_t size) {
    size_t n = 0;
    while (size--) {
        if (write(*buffer++)) n++;
        else break;
    }
    return n;
}

size_t Print::printf(const char* format, ...) {
    char small[128];
    va_list ap;
    va_start(ap, format);
    int len = vsnprintf(small, sizeof small, format, ap);
    va_end(ap);
    if (len < 0) return 0;
    if (static_cast<size_t>(len) < sizeof small) return write(reinterpret_cast<const uint8_t*>(small), len);
    std::string big(static_cast<size_t>(len) + 1, '\0');
    va_start(ap, format);
    vsnprintf(&big[0], big.size(), format, ap);
    va_end(ap);
    return write(reinterpret_cast<const uint8_t*>(big.data()), static_cast<size_t>(len));
}

namespace {
size_t print_unsigned(Print& p, unsigned long long n, int base) {
    if (base < 2) base = 10;
    char buf[8 * sizeof(long long) + 1];
    char* s = &buf[sizeof buf - 1];
    *s = '\0';
    do {
        int digit = static_cast<int>(n % base);
        n /= base;
        *--s = static_cast<char>(digit < 10 ? '0' + digit : 'A' + digit - 10);
    } while (n);
    return p.write(s);
}
}  // namespace

size_t Print::print(long n, int base) { return print(static_cast<long long>(n), base); }
size_t Print::print(unsigned long n, int base) { return print_unsigned(*this, n, base); }
size_t Print::print(long long n, int base) {
    if (base == 10 && n < 0) return write('-') + print_unsigned(*this, static_cast<unsigned long long>(-(n + 1)) + 1, 10);
    return print_unsigned(*this, static_cast<unsigned long long>(n), base);
}
size_t Print::print(unsigned long long n, int base) { return print_unsigned(*this, n, base); }
size_t Print::print(double n, int digits) {
    if (std::isnan(n)) return write("nan");
    if (std::isinf(n)) return write("inf");
    if (n > 4294967040.0 || n < -4294967040.0) return write("ovf");
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", digits < 0 ? 2 : digits, n);
    return write(buf);
}
size_t Print::print(struct tm* timeinfo, const char* format) {
    const char* f = format ? format : "%c";
    char buf[64];
    size_t n = strftime(buf, sizeof buf, f, timeinfo);
    return n ? write(reinterpret_cast<const uint8_t*>(buf), n) : 0;
}

int Stream::timedRead() {
    unsigned long start = millis();
    do {
        int c = read();
        if (c >= 0) return c;
        delay(1);
    } while (millis() - start < timeout_);
    return -1;
}

size_t Stream::readBytes(char* buffer, size_t length) {
    size_t count = 0;
    while (count < length) {
        int c = timedRead();
        if (c < 0) break;
        *buffer++ = static_cast<char>(c);
        count++;
    }
    return count;
}

size_t Stream::readBytesUntil(char terminator, char* buffer, size_t length) {
    size_t index = 0;
    while (index < length) {
        int c = timedRead();
        if (c < 0 || c == terminator) break;
        *buffer++ = static_cast<char>(c);
        index++;
    }
    return index;
}

String Stream::readString() {
    String ret;
    int c;
    while ((c = timedRead()) >= 0) ret += static_cast<char>(c);
    return ret;
}

String Stream::readStringUntil(char terminator) {
    String ret;
    int c;
    while ((c = timedRead()) >= 0 && c != terminator) ret += static_cast<char>(c);
    return ret;
}

// ---- Serial: stdout / stdin ----------------------------------------------------------------------------

HardwareSerial Serial(0);
HardwareSerial Serial1(1);
HardwareSerial Serial2(2);

void HardwareSerial::begin(unsigned long baud, uint32_t, int8_t, int8_t, bool, unsigned long, uint8_t) {
    baud_ = static_cast<uint32_t>(baud);
}
void HardwareSerial::end(bool) {}

int HardwareSerial::available(void) {
    if (uart_nr_ != 0) return 0;
    if (peeked_ >= 0) return 1;
    struct pollfd p = {0, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) return 0;
    unsigned char c;
    if (::read(0, &c, 1) != 1) return 0;  // EOF: stdin closed
    peeked_ = c;
    return 1;
}

int HardwareSerial::peek(void) { return available() ? peeked_ : -1; }

int HardwareSerial::read(void) {
    if (!available()) return -1;
    int c = peeked_;
    peeked_ = -1;
    return c;
}

size_t HardwareSerial::read(uint8_t* buffer, size_t size) {
    size_t n = 0;
    while (n < size && available()) buffer[n++] = static_cast<uint8_t>(read());
    return n;
}

void HardwareSerial::flush(void) { fflush(stdout); }

size_t HardwareSerial::write(uint8_t c) {
    if (uart_nr_ != 0) return 1;
    return fwrite(&c, 1, 1, stdout);
}

size_t HardwareSerial::write(const uint8_t* buffer, size_t size) {
    if (uart_nr_ != 0) return size;
    return fwrite(buffer, 1, size, stdout);
}

// ---- String ------------------------------------------------------------------------------------------

namespace {
std::string to_base(unsigned long long v, unsigned char base) {
    if (base < 2 || base > 36) base = 10;
    std::string out;
    do {
        int digit = static_cast<int>(v % base);
        out.insert(out.begin(), static_cast<char>(digit < 10 ? '0' + digit : 'a' + digit - 10));
        v /= base;
    } while (v);
    return out;
}
std::string signed_to_base(long long v, unsigned char base) {
    if (base == 10 && v < 0) return "-" + to_base(static_cast<unsigned long long>(-(v + 1)) + 1, 10);
    return to_base(static_cast<unsigned long long>(v), base);
}
std::string fixed(double v, unsigned int places) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", static_cast<int>(places), v);
    return buf;
}
}  // namespace

String::String(unsigned char value, unsigned char base) : s_(to_base(value, base)) {}
String::String(int value, unsigned char base) : s_(signed_to_base(value, base)) {}
String::String(unsigned int value, unsigned char base) : s_(to_base(value, base)) {}
String::String(long value, unsigned char base) : s_(signed_to_base(value, base)) {}
String::String(unsigned long value, unsigned char base) : s_(to_base(value, base)) {}
String::String(long long value, unsigned char base) : s_(signed_to_base(value, base)) {}
String::String(unsigned long long value, unsigned char base) : s_(to_base(value, base)) {}
String::String(float value, unsigned int places) : s_(fixed(value, places)) {}
String::String(double value, unsigned int places) : s_(fixed(value, places)) {}

bool String::equalsIgnoreCase(const String& s) const {
    return s_.size() == s.s_.size() && strcasecmp(s_.c_str(), s.s_.c_str()) == 0;
}

void String::getBytes(unsigned char* buf, unsigned int bufsize, unsigned int index) const {
    if (!bufsize || !buf) return;
    if (index >= s_.size()) {
        buf[0] = 0;
        return;
    }
    unsigned int n = bufsize - 1;
    if (n > s_.size() - index) n = static_cast<unsigned int>(s_.size() - index);
    memcpy(buf, s_.data() + index, n);
    buf[n] = 0;
}

String String::substring(unsigned int left, unsigned int right) const {
    if (left > right) std::swap(left, right);
    if (left >= s_.size()) return String();
    if (right > s_.size()) right = static_cast<unsigned int>(s_.size());
    return String(s_.substr(left, right - left).c_str());
}

void String::replace(char find, char replace) {
    for (auto& c : s_)
        if (c == find) c = replace;
}

void String::replace(const String& find, const String& replace) {
    if (find.s_.empty()) return;
    size_t pos = 0;
    while ((pos = s_.find(find.s_, pos)) != std::string::npos) {
        s_.replace(pos, find.s_.size(), replace.s_);
        pos += replace.s_.size();
    }
}

void String::toLowerCase() {
    for (auto& c : s_) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
}
void String::toUpperCase() {
    for (auto& c : s_) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
}
void String::trim() {
    size_t b = s_.find_first_not_of(" \t\r\n\v\f");
    if (b == std::string::npos) {
        s_.clear();
        return;
    }
    size_t e = s_.find_last_not_of(" \t\r\n\v\f");
    s_ = s_.substr(b, e - b + 1);
}
long String::atol_(const char* s) { return atol(s); }
double String::toDouble() const { return atof(s_.c_str()); }

String operator+(const String& lhs, const String& rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, const char* rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const char* lhs, const String& rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, char rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, unsigned char rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, int rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, unsigned int rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, long rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, unsigned long rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, long long rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, unsigned long long rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, float rhs) { String r(lhs); r.concat(rhs); return r; }
String operator+(const String& lhs, double rhs) { String r(lhs); r.concat(rhs); return r; }

// ---- IPAddress -----------------------------------------------------------------------------------------

const IPAddress INADDR_NONE(0, 0, 0, 0);

bool IPAddress::fromString(const char* address) {
    unsigned int a, b, c, d;
    char extra;
    if (!address || sscanf(address, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4) return false;
    if (a > 255 || b > 255 || c > 255 || d > 255) return false;
    addr_[0] = static_cast<uint8_t>(a);
    addr_[1] = static_cast<uint8_t>(b);
    addr_[2] = static_cast<uint8_t>(c);
    addr_[3] = static_cast<uint8_t>(d);
    return true;
}

bool IPAddress::operator==(const uint8_t* addr) const { return memcmp(addr, addr_, 4) == 0; }

IPAddress& IPAddress::operator=(const uint8_t* address) {
    memcpy(addr_, address, 4);
    return *this;
}

IPAddress& IPAddress::operator=(uint32_t address) {
    addr_[0] = static_cast<uint8_t>(address);
    addr_[1] = static_cast<uint8_t>(address >> 8);
    addr_[2] = static_cast<uint8_t>(address >> 16);
    addr_[3] = static_cast<uint8_t>(address >> 24);
    return *this;
}

size_t IPAddress::printTo(Print& p) const { return p.print(toString()); }

String IPAddress::toString() const {
    char buf[16];
    snprintf(buf, sizeof buf, "%u.%u.%u.%u", addr_[0], addr_[1], addr_[2], addr_[3]);
    return String(buf);
}
