// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// The device's own key: made here (EC P-256, from mbedTLS's CTR-DRBG seeded by the hardware RNG through
// mbedtls_entropy_func), kept as PEM, and put in certificate requests. The private key never leaves the device.
// The same calls on mbedTLS 2.28 (Arduino-ESP32 2.0.17, ESP-IDF 4.4) and 3.6 (ESP-IDF 5.5); the one difference
// is inside device_key.c. Valid C and C++.
#ifndef DEVICE_KEY_H
#define DEVICE_KEY_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DEVICE_KEY_PEM_CAPACITY 320   // a P-256 key as SEC1 PEM is 228 bytes with its NUL
#define DEVICE_CSR_PEM_CAPACITY 768   // a P-256 CSR for a 23-character id is about 360 bytes

// Seeds the random generator once (call after WiFi has started: the RNG is true random only then).
// Returns 0 or a negative mbedTLS error code.
int device_key_seed(const char *personalisation);

// A fresh EC P-256 private key as NUL-terminated PEM.
int device_key_generate(char *key_pem, size_t capacity);

// A PKCS#10 request (subject CN=common_name, SHA-256) signed by key_pem, as NUL-terminated PEM.
int device_key_csr(const char *key_pem, const char *common_name, char *csr_pem, size_t capacity);

// 1 when the first certificate of cert_pem (PEM, NUL-terminated) certifies key_pem's public key, 0 when it does
// not, a negative mbedTLS error code when either does not parse.
int device_key_matches_certificate(const char *key_pem, const char *cert_pem);

// `digits` lower-case hex digits from the random generator, NUL-terminated (out holds digits + 1).
int device_key_random_hex(char *out, size_t digits);

// SHA-256 of data as 64 lower-case hex digits and a NUL.
int device_key_sha256_hex(const void *data, size_t length, char out[65]);

#ifdef __cplusplus
}
#endif
#endif
