// Print.h (arduino-esp32 2.0.17 API) for the host runtime.
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "Printable.h"
#include "WString.h"

#define DEC 10
#define HEX 16
#define OCT 8
#define BIN 2

class Print {
public:
    virtual ~Print() {}
    int getWriteError() { return write_error_; }
    void clearWriteError() { write_error_ = 0; }

    virtual size_t write(uint8_t) = 0;
    size_t write(const char *str) { return str ? write(reinterpret_cast<const uint8_t *>(str), strlen(str)) : 0; }
    virtual size_t write(const uint8_t *buffer, size_t size);
    size_t write(const char *buffer, size_t size) { return write(reinterpret_cast<const uint8_t *>(buffer), size); }
    virtual int availableForWrite() { return 0; }
    virtual void flush() {}

    size_t printf(const char *format, ...) __attribute__((format(printf, 2, 3)));

    size_t print(const __FlashStringHelper *s) { return print(reinterpret_cast<const char *>(s)); }
    size_t print(const String &s) { return write(s.c_str(), s.length()); }
    size_t print(const char s[]) { return write(s); }
    size_t print(char c) { return write(static_cast<uint8_t>(c)); }
    size_t print(unsigned char n, int base = DEC) { return print(static_cast<unsigned long>(n), base); }
    size_t print(int n, int base = DEC) { return print(static_cast<long>(n), base); }
    size_t print(unsigned int n, int base = DEC) { return print(static_cast<unsigned long>(n), base); }
    size_t print(long n, int base = DEC);
    size_t print(unsigned long n, int base = DEC);
    size_t print(long long n, int base = DEC);
    size_t print(unsigned long long n, int base = DEC);
    size_t print(double n, int digits = 2);
    size_t print(const Printable &x) { return x.printTo(*this); }
    size_t print(struct tm *timeinfo, const char *format = nullptr);

    size_t println(const __FlashStringHelper *s) { return print(s) + println(); }
    size_t println(const String &s) { return print(s) + println(); }
    size_t println(const char s[]) { return print(s) + println(); }
    size_t println(char c) { return print(c) + println(); }
    size_t println(unsigned char n, int base = DEC) { return print(n, base) + println(); }
    size_t println(int n, int base = DEC) { return print(n, base) + println(); }
    size_t println(unsigned int n, int base = DEC) { return print(n, base) + println(); }
    size_t println(long n, int base = DEC) { return print(n, base) + println(); }
    size_t println(unsigned long n, int base = DEC) { return print(n, base) + println(); }
    size_t println(long long n, int base = DEC) { return print(n, base) + println(); }
    size_t println(unsigned long long n, int base = DEC) { return print(n, base) + println(); }
    size_t println(double n, int digits = 2) { return print(n, digits) + println(); }
    size_t println(const Printable &x) { return print(x) + println(); }
    size_t println(struct tm *timeinfo, const char *format = nullptr) { return print(timeinfo, format) + println(); }
    size_t println(void) { return write("\r\n"); }

protected:
    void setWriteError(int err = 1) { write_error_ = err; }

private:
    int write_error_ = 0;
};
