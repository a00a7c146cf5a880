#pragma once

#include <stddef.h>

void readings_begin();
int readings_format(char* payload, size_t capacity);
