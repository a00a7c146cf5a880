/* Force-included into every firmware source of a host build: what the device's newlib offers and
 * glibc (before 2.38) lacks. */
#pragma once
#include <stddef.h>
#include <string.h>
#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38)
#ifdef __cplusplus
extern "C" {
#endif
size_t strlcpy(char *dst, const char *src, size_t size);
size_t strlcat(char *dst, const char *src, size_t size);
#ifdef __cplusplus
}
#endif
#endif
