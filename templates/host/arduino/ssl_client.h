// ssl_client.h (arduino-esp32 2.0.17 libraries/WiFiClientSecure/src/ssl_client.h) for the host runtime: the
// session state WiFiClientSecure keeps in its protected `sslclient`. Only `ssl_conf`'s X.509 verify callback
// (mbedtls_ssl_conf_verify, set before connect) and `handshake_timeout` are read by the host's handshake; stop()
// clears the whole context as stop_ssl_socket() does, so a callback lasts one connection there too.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

typedef struct sslclient_context {
    int socket;
    mbedtls_ssl_context ssl_ctx;
    mbedtls_ssl_config ssl_conf;
    mbedtls_ctr_drbg_context drbg_ctx;
    mbedtls_entropy_context entropy_ctx;
    mbedtls_x509_crt ca_cert;
    mbedtls_x509_crt client_cert;
    mbedtls_pk_context client_key;
    unsigned long socket_timeout;
    unsigned long handshake_timeout;
} sslclient_context;
