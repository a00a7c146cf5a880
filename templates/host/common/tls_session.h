// One TCP connection, optionally wrapped in mbedTLS 2.28: the transport under WiFiClientSecure and
// esp-mqtt. Verification follows arduino-esp32's ssl_client.cpp and esp-tls: PEM buffers are parsed with
// their length including the NUL, the client cert and key are loaded only together, authmode REQUIRED
// unless insecure, and the server name checked is the one given as `verify_name`. Certificate dates count only
// when the firmware's configuration has CONFIG_MBEDTLS_HAVE_TIME_DATE (gen_sim_mbedtls_have_time_date): without
// it the device's mbedTLS never sets the EXPIRED and FUTURE flags, so neither does this one.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>

#include "mbedtls/x509_crt.h"

namespace gen_host {

struct TlsOptions {
    bool use_tls = true;
    const char* ca = nullptr;            // PEM (NUL included in ca_len) or DER
    size_t ca_len = 0;
    const char* cert = nullptr;
    size_t cert_len = 0;
    const char* key = nullptr;
    size_t key_len = 0;
    const char* key_password = nullptr;
    size_t key_password_len = 0;
    bool insecure = false;               // MBEDTLS_SSL_VERIFY_NONE
    const char* verify_name = nullptr;   // passed to mbedtls_ssl_set_hostname (SNI + name check)
    int connect_timeout_ms = 30000;
    int handshake_timeout_ms = 120000;
    // The firmware's own X.509 verify callback (mbedtls_ssl_conf_verify), or none.
    int (*verify)(void*, mbedtls_x509_crt*, int, uint32_t*) = nullptr;
    void* verify_context = nullptr;
};

// What went wrong, in the terms both frameworks report.
struct TransportError {
    enum Stage { NONE, RESOLVE, CONNECT, TLS_SETUP, CERT_PARSE, KEY_PARSE, HANDSHAKE, HANDSHAKE_TIMEOUT, IO };
    Stage stage = NONE;
    int mbedtls_error = 0;     // negative mbedTLS code, 0 if none
    uint32_t verify_flags = 0; // mbedtls_ssl_get_verify_result() after a failed handshake
    int sock_errno = 0;
    std::string destination;   // "host:port" as dialled
    std::string text() const;  // one line: mbedtls_strerror + verify info, or strerror(errno)
    std::string summary() const;  // text() with "TLS: " in front when TLS (not TCP) failed
};

class Transport {
public:
    Transport();
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    // Dials host:port (GEN_SIM_CONNECT_TO applied) and completes the TLS handshake.
    bool open(const char* host, uint16_t port, const TlsOptions& options, TransportError* error);
    // Bytes ready to read without blocking; -1 once the connection is gone.
    int available();
    // Up to len bytes, waiting at most timeout_ms for the first one: >0 bytes, 0 nothing yet, -1 gone.
    int read(uint8_t* buf, size_t len, int timeout_ms);
    // All of buf, or -1.
    int write(const uint8_t* buf, size_t len, int timeout_ms = 10000);
    // Waits until something may be readable (or the link is gone); true if so.
    bool wait_readable(int timeout_ms);
    bool is_open() const;
    // Sends close_notify if possible and closes the socket.
    void close();
    const TransportError& last_error() const;

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace gen_host
