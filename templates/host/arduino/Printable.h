// Printable.h (Arduino API) for the host runtime.
#pragma once
#include <stddef.h>
class Print;
class Printable {
public:
    virtual ~Printable() {}
    virtual size_t printTo(Print &p) const = 0;
};
