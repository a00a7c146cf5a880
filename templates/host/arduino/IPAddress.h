// IPAddress.h (Arduino API, IPv4) for the host runtime.
#pragma once

#include <stdint.h>

#include "Printable.h"
#include "WString.h"

class IPAddress : public Printable {
public:
    IPAddress() : addr_{0, 0, 0, 0} {}
    IPAddress(uint8_t a, uint8_t b, uint8_t c, uint8_t d) : addr_{a, b, c, d} {}
    IPAddress(uint32_t address) { *this = address; }
    IPAddress(const uint8_t *address) : addr_{address[0], address[1], address[2], address[3]} {}

    bool fromString(const char *address);
    bool fromString(const String &address) { return fromString(address.c_str()); }
    operator uint32_t() const { return addr_[0] | (addr_[1] << 8) | (addr_[2] << 16) | (static_cast<uint32_t>(addr_[3]) << 24); }
    bool operator==(const IPAddress &addr) const { return static_cast<uint32_t>(*this) == static_cast<uint32_t>(addr); }
    bool operator!=(const IPAddress &addr) const { return !(*this == addr); }
    bool operator==(const uint8_t *addr) const;
    uint8_t operator[](int index) const { return addr_[index]; }
    uint8_t &operator[](int index) { return addr_[index]; }
    IPAddress &operator=(const uint8_t *address);
    IPAddress &operator=(uint32_t address);
    size_t printTo(Print &p) const override;
    String toString() const;

private:
    uint8_t addr_[4];
};

extern const IPAddress INADDR_NONE;
