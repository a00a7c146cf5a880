#pragma once

#include <stddef.h>

void readings_begin(void);
int readings_format(char *payload, size_t capacity);
