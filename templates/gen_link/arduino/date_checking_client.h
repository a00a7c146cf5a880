// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// WiFiClientSecure that also checks certificate dates. Arduino-ESP32 2.0.17's does not: its mbedTLS is built
// without MBEDTLS_HAVE_TIME_DATE (the core's sdkconfig), and getPeerCertificate() cannot be read after the
// handshake either (CONFIG_MBEDTLS_DYNAMIC_FREE_PEER_CERT=y leaves MBEDTLS_SSL_KEEP_PEER_CERTIFICATE off, so
// mbedtls_ssl_get_peer_cert() returns NULL). So the check runs inside the handshake: before each connect, an X.509
// verify callback is set on the session's own mbedTLS configuration (start_ssl_client() keeps it; stop() clears
// it). For every certificate of the chain, the broker's and our CA's, it sets MBEDTLS_X509_BADCERT_FUTURE or
// _EXPIRED when the clock is outside valid_from..valid_to, as mbedTLS does with MBEDTLS_HAVE_TIME_DATE; the
// handshake then fails (certificate verification failed) before a byte of MQTT is sent, and lastError() says
// "The certificate validity starts in the future" or "has expired". Connect only once the clock is set (SNTP).
// Arduino-ESP32 3.x keeps the session in a std::shared_ptr: there, use sslclient.get().
#pragma once

#include <WiFiClientSecure.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>
#include <time.h>

class DateCheckingWiFiClientSecure : public WiFiClientSecure {
public:
    using WiFiClientSecure::connect;
    int connect(IPAddress ip, uint16_t port) override {
        check_dates_in_next_handshake();
        return WiFiClientSecure::connect(ip, port);
    }
    int connect(const char* host, uint16_t port) override {
        check_dates_in_next_handshake();
        return WiFiClientSecure::connect(host, port);
    }

private:
    void check_dates_in_next_handshake() {
        mbedtls_ssl_conf_verify(&sslclient->ssl_conf, check_dates, nullptr);
    }

    // a before b, to the second (UTC).
    static bool earlier(const mbedtls_x509_time& a, const mbedtls_x509_time& b) {
        const int left[] = {a.year, a.mon, a.day, a.hour, a.min, a.sec};
        const int right[] = {b.year, b.mon, b.day, b.hour, b.min, b.sec};
        for (size_t i = 0; i < sizeof left / sizeof left[0]; ++i) {
            if (left[i] != right[i]) {
                return left[i] < right[i];
            }
        }
        return false;
    }

    static int check_dates(void* context, mbedtls_x509_crt* certificate, int depth, uint32_t* flags) {
        (void)context;
        (void)depth;
        const time_t seconds = time(nullptr);
        struct tm utc;
        gmtime_r(&seconds, &utc);
        mbedtls_x509_time now;
        now.year = utc.tm_year + 1900;
        now.mon = utc.tm_mon + 1;
        now.day = utc.tm_mday;
        now.hour = utc.tm_hour;
        now.min = utc.tm_min;
        now.sec = utc.tm_sec;
        if (earlier(now, certificate->valid_from)) {
            *flags |= MBEDTLS_X509_BADCERT_FUTURE;
        }
        if (earlier(certificate->valid_to, now)) {
            *flags |= MBEDTLS_X509_BADCERT_EXPIRED;
        }
        return 0;
    }
};
