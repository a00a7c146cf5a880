// WiFiClientSecure.h (arduino-esp32 2.0.17 API) for the host runtime, on mbedTLS 2.28 like the core:
// connect() refuses (lastError -1) without a CA or setInsecure(); PEMs are parsed with strlen()+1;
// the client cert and key are used only together and never with setInsecure(); the server name
// verified is the string dialled (for connect(IPAddress) the dotted address, which mbedTLS 2.28
// matches against dNSName SANs only). PSK, ALPN and CA bundles are not provided. Certificate dates are not
// checked (the core's mbedTLS is built without MBEDTLS_HAVE_TIME_DATE); a verify callback set on
// sslclient->ssl_conf before connect() runs in the handshake, as start_ssl_client() leaves it in place.
#pragma once

#include "WiFi.h"
#include "WiFiClient.h"
#include "ssl_client.h"

class WiFiClientSecure : public WiFiClient {
protected:
    sslclient_context *sslclient;

public:
    WiFiClientSecure();
    ~WiFiClientSecure() override;
    WiFiClientSecure(const WiFiClientSecure &) = delete;
    WiFiClientSecure &operator=(const WiFiClientSecure &) = delete;
    void stop() override;
    int connect(IPAddress ip, uint16_t port) override;
    int connect(IPAddress ip, uint16_t port, int32_t timeout_ms);
    int connect(const char *host, uint16_t port) override;
    int connect(const char *host, uint16_t port, int32_t timeout_ms);
    int connect(IPAddress ip, uint16_t port, const char *rootCABuff, const char *cli_cert, const char *cli_key);
    int connect(const char *host, uint16_t port, const char *rootCABuff, const char *cli_cert, const char *cli_key);
    int lastError(char *buf, const size_t size);
    void setInsecure();
    void setCACert(const char *rootCA);
    void setCertificate(const char *client_ca);
    void setPrivateKey(const char *private_key);
    void setHandshakeTimeout(unsigned long handshake_timeout) { handshake_timeout_ms_ = handshake_timeout * 1000; }
    operator bool() override { return connected(); }

private:
    int connect_secure(const char *host, uint16_t port, const char *ca, const char *cert, const char *key, int32_t timeout_ms);
};
