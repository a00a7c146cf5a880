// WiFiClient.h (arduino-esp32 2.0.17 API) for the host runtime: a plain TCP client.
#pragma once

#include <memory>

#include "Arduino.h"
#include "Client.h"
#include "mbedtls/x509_crt.h"

namespace gen_host { class Transport; }

class WiFiClient : public Client {
public:
    WiFiClient();
    ~WiFiClient() override;
    int connect(IPAddress ip, uint16_t port) override;
    int connect(IPAddress ip, uint16_t port, int32_t timeout_ms);
    int connect(const char *host, uint16_t port) override;
    int connect(const char *host, uint16_t port, int32_t timeout_ms);
    size_t write(uint8_t data) override;
    size_t write(const uint8_t *buf, size_t size) override;
    using Print::write;
    int available() override;
    int read() override;
    int read(uint8_t *buf, size_t size) override;
    int peek() override;
    void flush() override {}
    void stop() override;
    uint8_t connected() override;
    operator bool() override { return connected(); }
    void setConnectionTimeout(uint32_t milliseconds) { timeout_ms_ = milliseconds; }
    // 2.0.x: seconds (Stream::setTimeout takes milliseconds; 3.x changed this one to milliseconds too).
    int setTimeout(uint32_t seconds) {
        timeout_ms_ = seconds * 1000;
        Stream::setTimeout(seconds * 1000);
        return 0;
    }
    int setNoDelay(bool nodelay) { (void)nodelay; return 0; }

protected:
    bool open_transport(const char *host, uint16_t port, bool tls, int32_t timeout_ms);
    std::shared_ptr<gen_host::Transport> transport_;
    int peeked_ = -1;
    uint32_t timeout_ms_ = 30000;
    bool connected_ = false;
    int last_errno_ = 0;
    // TLS settings (used by WiFiClientSecure)
    const char *ca_ = nullptr;
    const char *cert_ = nullptr;
    const char *key_ = nullptr;
    bool insecure_ = false;
    unsigned long handshake_timeout_ms_ = 120000;
    int last_tls_error_ = 0;
    uint32_t last_verify_flags_ = 0;
    int (*verify_)(void *, mbedtls_x509_crt *, int, uint32_t *) = nullptr;   // set by WiFiClientSecure per connect
    void *verify_context_ = nullptr;
};
