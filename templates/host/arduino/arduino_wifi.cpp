// Host runtime: WiFi (station, on our esp_wifi/esp_event), WiFiClient and WiFiClientSecure.
#include <string.h>

#include <atomic>
#include <mutex>
#include <vector>

#include <mbedtls/error.h>
#include <mbedtls/x509_crt.h>

#include "WiFi.h"
#include "WiFiClientSecure.h"
#include "esp_mac.h"
#include "gen_event_loop.h"
#include "gen_sim.h"
#include "tls_session.h"

WiFiClass WiFi;

namespace {

struct Registration {
    wifi_event_id_t id;
    arduino_event_id_t filter;
    WiFiEventCb cb;
    WiFiEventFuncCb fcb;
    WiFiEventSysCb scb;
};

std::mutex wifi_mutex;
bool wifi_initialized = false;
std::atomic<int> wifi_status{WL_NO_SHIELD};  // until the station starts, as in the core
std::atomic<bool> auto_reconnect{true};
std::atomic<bool> station_wanted{false};  // begin()/reconnect() called and no disconnect() since
std::vector<Registration> registrations;
wifi_event_id_t next_registration = 1;
std::string hostname = "esp32-arduino";

void dispatch(arduino_event_t& ev) {
    std::vector<Registration> snapshot;
    {
        std::lock_guard<std::mutex> lock(wifi_mutex);
        snapshot = registrations;
    }
    for (auto& r : snapshot) {
        if (r.filter != ARDUINO_EVENT_MAX && r.filter != ev.event_id) continue;
        if (r.cb) r.cb(ev.event_id);
        else if (r.fcb) r.fcb(ev.event_id, ev.event_info);
        else if (r.scb) r.scb(&ev);
    }
}

void system_event(void*, esp_event_base_t base, int32_t id, void* data) {
    arduino_event_t ev;
    memset(&ev, 0, sizeof ev);
    if (base == WIFI_EVENT) {
        switch (id) {
            case WIFI_EVENT_STA_START:
                ev.event_id = ARDUINO_EVENT_WIFI_STA_START;
                if (wifi_status == WL_NO_SHIELD) wifi_status = WL_DISCONNECTED;
                break;
            case WIFI_EVENT_STA_STOP:
                ev.event_id = ARDUINO_EVENT_WIFI_STA_STOP;
                wifi_status = WL_NO_SHIELD;
                break;
            case WIFI_EVENT_STA_CONNECTED:
                ev.event_id = ARDUINO_EVENT_WIFI_STA_CONNECTED;
                memcpy(&ev.event_info.wifi_sta_connected, data, sizeof(wifi_event_sta_connected_t));
                break;
            case WIFI_EVENT_STA_DISCONNECTED: {
                ev.event_id = ARDUINO_EVENT_WIFI_STA_DISCONNECTED;
                memcpy(&ev.event_info.wifi_sta_disconnected, data, sizeof(wifi_event_sta_disconnected_t));
                uint8_t reason = ev.event_info.wifi_sta_disconnected.reason;
                if (reason == WIFI_REASON_NO_AP_FOUND) wifi_status = WL_NO_SSID_AVAIL;
                else if (reason == WIFI_REASON_AUTH_FAIL || reason == WIFI_REASON_4WAY_HANDSHAKE_TIMEOUT ||
                         reason == WIFI_REASON_HANDSHAKE_TIMEOUT)
                    wifi_status = WL_CONNECT_FAILED;
                else if (reason == WIFI_REASON_BEACON_TIMEOUT) wifi_status = WL_CONNECTION_LOST;
                else wifi_status = WL_DISCONNECTED;
                break;
            }
            default:
                return;
        }
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        ev.event_id = ARDUINO_EVENT_WIFI_STA_GOT_IP;
        memcpy(&ev.event_info.got_ip, data, sizeof(ip_event_got_ip_t));
        wifi_status = WL_CONNECTED;
    } else {
        return;
    }
    dispatch(ev);
    if (ev.event_id == ARDUINO_EVENT_WIFI_STA_DISCONNECTED && station_wanted && auto_reconnect) esp_wifi_connect();
}

bool ensure_initialized() {
    std::lock_guard<std::mutex> lock(wifi_mutex);
    if (wifi_initialized) return true;
    if (!gen_event_default_loop_exists()) esp_event_loop_create_default();
    esp_netif_init();
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t cfg = WIFI_INIT_CONFIG_DEFAULT();
    if (esp_wifi_init(&cfg) != ESP_OK) return false;
    esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, system_event, nullptr);
    esp_event_handler_register(IP_EVENT, ESP_EVENT_ANY_ID, system_event, nullptr);
    wifi_initialized = true;
    return true;
}

}  // namespace

bool WiFiClass::mode(wifi_mode_t m) {
    if (!ensure_initialized()) return false;
    if (esp_wifi_set_mode(m) != ESP_OK) return false;
    if (m == WIFI_MODE_NULL) return esp_wifi_stop() == ESP_OK;
    return esp_wifi_start() == ESP_OK;
}

wifi_mode_t WiFiClass::getMode() {
    wifi_mode_t m = WIFI_MODE_NULL;
    if (wifi_initialized) esp_wifi_get_mode(&m);
    return m;
}

wl_status_t WiFiClass::begin(const char* ssid, const char* passphrase, int32_t channel, const uint8_t*, bool connect) {
    if (!ssid || !*ssid || strlen(ssid) > 32) return WL_CONNECT_FAILED;
    if (passphrase && strlen(passphrase) > 64) return WL_CONNECT_FAILED;
    wifi_mode_t m = getMode();
    if (m != WIFI_MODE_STA && m != WIFI_MODE_APSTA && !mode(WIFI_MODE_STA)) return WL_CONNECT_FAILED;
    wifi_config_t conf;
    memset(&conf, 0, sizeof conf);
    memcpy(conf.sta.ssid, ssid, strlen(ssid));
    if (passphrase) memcpy(conf.sta.password, passphrase, strlen(passphrase));
    conf.sta.channel = static_cast<uint8_t>(channel);
    conf.sta.threshold.authmode = (passphrase && *passphrase) ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    esp_wifi_disconnect();
    esp_wifi_set_config(WIFI_IF_STA, &conf);
    wifi_status = WL_DISCONNECTED;
    if (connect) {
        station_wanted = true;
        esp_wifi_connect();
    }
    return status();
}

wl_status_t WiFiClass::begin() {
    if (!ensure_initialized()) return WL_CONNECT_FAILED;
    station_wanted = true;
    esp_wifi_connect();
    return status();
}

bool WiFiClass::reconnect() {
    if (!(getMode() & WIFI_MODE_STA)) return false;
    station_wanted = true;
    esp_wifi_disconnect();
    return esp_wifi_connect() == ESP_OK;
}

bool WiFiClass::disconnect(bool wifioff, bool) {
    station_wanted = false;
    if (!wifi_initialized) return false;
    bool ok = esp_wifi_disconnect() == ESP_OK;
    if (wifioff) ok = mode(WIFI_MODE_NULL) && ok;
    return ok;
}

bool WiFiClass::isConnected() { return status() == WL_CONNECTED; }
bool WiFiClass::setAutoReconnect(bool value) {
    auto_reconnect = value;
    return true;
}
bool WiFiClass::getAutoReconnect() { return auto_reconnect; }

uint8_t WiFiClass::waitForConnectResult(unsigned long timeoutLength) {
    unsigned long start = millis();
    while (millis() - start < timeoutLength) {
        wl_status_t s = status();
        if (s != WL_DISCONNECTED && s != WL_IDLE_STATUS) return s;
        delay(100);
    }
    return status();
}

wl_status_t WiFiClass::status() { return static_cast<wl_status_t>(wifi_status.load()); }

IPAddress WiFiClass::localIP() { return status() == WL_CONNECTED ? IPAddress(127, 0, 0, 1) : IPAddress(); }
IPAddress WiFiClass::subnetMask() { return status() == WL_CONNECTED ? IPAddress(255, 0, 0, 0) : IPAddress(); }
IPAddress WiFiClass::gatewayIP() { return status() == WL_CONNECTED ? IPAddress(127, 0, 0, 1) : IPAddress(); }
IPAddress WiFiClass::dnsIP(uint8_t) { return status() == WL_CONNECTED ? IPAddress(127, 0, 0, 1) : IPAddress(); }

uint8_t* WiFiClass::macAddress(uint8_t* mac) {
    esp_read_mac(mac, ESP_MAC_WIFI_STA);
    return mac;
}

String WiFiClass::macAddress() {
    uint8_t mac[6];
    esp_read_mac(mac, ESP_MAC_WIFI_STA);
    char buf[18];
    snprintf(buf, sizeof buf, "%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return String(buf);
}

String WiFiClass::SSID() const {
    if (!wifi_initialized) return String();
    wifi_config_t conf;
    esp_wifi_get_config(WIFI_IF_STA, &conf);
    return String(reinterpret_cast<const char*>(conf.sta.ssid), static_cast<unsigned int>(strnlen(reinterpret_cast<const char*>(conf.sta.ssid), 32)));
}

String WiFiClass::psk() const {
    if (!wifi_initialized) return String();
    wifi_config_t conf;
    esp_wifi_get_config(WIFI_IF_STA, &conf);
    return String(reinterpret_cast<const char*>(conf.sta.password), static_cast<unsigned int>(strnlen(reinterpret_cast<const char*>(conf.sta.password), 64)));
}

uint8_t* WiFiClass::BSSID() {
    static uint8_t bssid[6] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
    return status() == WL_CONNECTED ? bssid : nullptr;
}

String WiFiClass::BSSIDstr() { return status() == WL_CONNECTED ? String("11:11:11:11:11:11") : String(); }
int8_t WiFiClass::RSSI() { return status() == WL_CONNECTED ? -55 : 0; }
int32_t WiFiClass::channel() { return 6; }
const char* WiFiClass::getHostname() { return hostname.c_str(); }
bool WiFiClass::setHostname(const char* name) {
    if (!name) return false;
    hostname = name;
    return true;
}

int WiFiClass::hostByName(const char* aHostname, IPAddress& aResult) {
    uint8_t ip[4];
    if (!gen_sim_have_ip() || !gen_sim_resolve_ipv4(aHostname, ip)) return 0;
    aResult = IPAddress(ip);
    return 1;
}

wifi_event_id_t WiFiClass::onEvent(WiFiEventCb cb, arduino_event_id_t event) {
    if (!cb) return 0;
    std::lock_guard<std::mutex> lock(wifi_mutex);
    registrations.push_back({next_registration, event, cb, nullptr, nullptr});
    return next_registration++;
}

wifi_event_id_t WiFiClass::onEvent(WiFiEventFuncCb cb, arduino_event_id_t event) {
    if (!cb) return 0;
    std::lock_guard<std::mutex> lock(wifi_mutex);
    registrations.push_back({next_registration, event, nullptr, cb, nullptr});
    return next_registration++;
}

wifi_event_id_t WiFiClass::onEvent(WiFiEventSysCb cb, arduino_event_id_t event) {
    if (!cb) return 0;
    std::lock_guard<std::mutex> lock(wifi_mutex);
    registrations.push_back({next_registration, event, nullptr, nullptr, cb});
    return next_registration++;
}

void WiFiClass::removeEvent(WiFiEventCb cb, arduino_event_id_t event) {
    std::lock_guard<std::mutex> lock(wifi_mutex);
    for (auto it = registrations.begin(); it != registrations.end();)
        it = (it->cb == cb && it->filter == event) ? registrations.erase(it) : it + 1;
}

void WiFiClass::removeEvent(WiFiEventSysCb cb, arduino_event_id_t event) {
    std::lock_guard<std::mutex> lock(wifi_mutex);
    for (auto it = registrations.begin(); it != registrations.end();)
        it = (it->scb == cb && it->filter == event) ? registrations.erase(it) : it + 1;
}

void WiFiClass::removeEvent(wifi_event_id_t id) {
    std::lock_guard<std::mutex> lock(wifi_mutex);
    for (auto it = registrations.begin(); it != registrations.end();)
        it = it->id == id ? registrations.erase(it) : it + 1;
}

// ---- WiFiClient ------------------------------------------------------------------------------------

WiFiClient::WiFiClient() {}
WiFiClient::~WiFiClient() {}

bool WiFiClient::open_transport(const char* host, uint16_t port, bool tls, int32_t timeout_ms) {
    stop();
    auto t = std::make_shared<gen_host::Transport>();
    gen_host::TlsOptions o;
    o.use_tls = tls;
    o.connect_timeout_ms = timeout_ms;
    if (tls) {
        o.insecure = insecure_;
        if (!insecure_ && ca_) {
            o.ca = ca_;
            o.ca_len = strlen(ca_) + 1;
        }
        if (!insecure_ && cert_ && key_) {
            o.cert = cert_;
            o.cert_len = strlen(cert_) + 1;
            o.key = key_;
            o.key_len = strlen(key_) + 1;
        }
        o.verify_name = host;
        o.handshake_timeout_ms = static_cast<int>(handshake_timeout_ms_);
        o.verify = verify_;
        o.verify_context = verify_context_;
    }
    gen_host::TransportError e;
    if (!t->open(host, port, o, &e)) {
        last_errno_ = e.sock_errno;
        last_verify_flags_ = e.verify_flags;
        // ssl_client.cpp returns -1 for socket errors and timeouts, else the mbedTLS code.
        last_tls_error_ = e.mbedtls_error ? e.mbedtls_error : -1;
        if (tls && gen_sim_core_debug_level >= 1) {  // log_e() in ssl_client.cpp, as CORE_DEBUG_LEVEL allows
            printf("[%6lu][E][ssl_client.cpp:37] _handle_error(): [start_ssl_client()]: (%d) %s\r\n", millis(),
                   last_tls_error_, e.text().c_str());
        }
        return false;
    }
    last_tls_error_ = 0;
    last_verify_flags_ = 0;
    transport_ = t;
    connected_ = true;
    return true;
}

int WiFiClient::connect(IPAddress ip, uint16_t port) { return connect(ip.toString().c_str(), port); }
int WiFiClient::connect(IPAddress ip, uint16_t port, int32_t timeout_ms) { return connect(ip.toString().c_str(), port, timeout_ms); }
int WiFiClient::connect(const char* host, uint16_t port) { return connect(host, port, static_cast<int32_t>(timeout_ms_)); }
int WiFiClient::connect(const char* host, uint16_t port, int32_t timeout_ms) {
    return open_transport(host, port, false, timeout_ms) ? 1 : 0;
}

size_t WiFiClient::write(uint8_t data) { return write(&data, 1); }

size_t WiFiClient::write(const uint8_t* buf, size_t size) {
    if (!transport_ || !connected_) return 0;
    int n = transport_->write(buf, size);
    if (n < 0) {
        stop();
        return 0;
    }
    return static_cast<size_t>(n);
}

int WiFiClient::available() {
    if (!transport_) return 0;
    int n = transport_->available();
    if (n < 0) {
        connected_ = false;
        return peeked_ >= 0 ? 1 : 0;
    }
    return n + (peeked_ >= 0 ? 1 : 0);
}

int WiFiClient::read() {
    uint8_t c;
    return read(&c, 1) == 1 ? c : -1;
}

int WiFiClient::read(uint8_t* buf, size_t size) {
    if (size == 0) return 0;
    size_t got = 0;
    if (peeked_ >= 0) {
        buf[got++] = static_cast<uint8_t>(peeked_);
        peeked_ = -1;
    }
    if (got < size && transport_ && available() > 0) {
        int n = transport_->read(buf + got, size - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
        else if (n < 0) connected_ = false;
    }
    return got ? static_cast<int>(got) : -1;
}

int WiFiClient::peek() {
    if (peeked_ < 0) {
        uint8_t c;
        if (transport_ && available() > 0 && transport_->read(&c, 1, 0) == 1) peeked_ = c;
    }
    return peeked_;
}

void WiFiClient::stop() {
    if (transport_) transport_->close();
    transport_.reset();
    connected_ = false;
    peeked_ = -1;
}

uint8_t WiFiClient::connected() {
    if (!connected_ || !transport_) return 0;
    if (peeked_ < 0 && transport_->available() < 0) connected_ = false;
    return connected_ ? 1 : 0;
}

// ---- WiFiClientSecure --------------------------------------------------------------------------------

WiFiClientSecure::WiFiClientSecure() : sslclient(new sslclient_context) {
    memset(sslclient, 0, sizeof *sslclient);           // ssl_init(): the contexts start zeroed
    mbedtls_ssl_config_init(&sslclient->ssl_conf);
}

WiFiClientSecure::~WiFiClientSecure() {
    stop();
    delete sslclient;
}

void WiFiClientSecure::stop() {
    WiFiClient::stop();
    mbedtls_ssl_config_free(&sslclient->ssl_conf);     // stop_ssl_socket(): freed, then zeroed
    memset(sslclient, 0, sizeof *sslclient);
}

int WiFiClientSecure::connect_secure(const char* host, uint16_t port, const char* ca, const char* cert,
                                     const char* key, int32_t timeout_ms) {
    if (!ca && !insecure_) {
        // start_ssl_client(): "root certificate, PSK identity or keys are required" → -1.
        stop();
        last_tls_error_ = -1;
        last_verify_flags_ = 0;
        return 0;
    }
    const char* saved_ca = ca_;
    const char* saved_cert = cert_;
    const char* saved_key = key_;
    ca_ = ca;
    cert_ = cert;
    key_ = key;
    verify_ = sslclient->ssl_conf.f_vrfy;               // what the firmware set with mbedtls_ssl_conf_verify
    verify_context_ = sslclient->ssl_conf.p_vrfy;
    bool ok = open_transport(host, port, true, timeout_ms);
    verify_ = nullptr;
    verify_context_ = nullptr;
    ca_ = saved_ca;
    cert_ = saved_cert;
    key_ = saved_key;
    return ok ? 1 : 0;
}

int WiFiClientSecure::connect(IPAddress ip, uint16_t port) { return connect(ip.toString().c_str(), port); }
int WiFiClientSecure::connect(IPAddress ip, uint16_t port, int32_t timeout_ms) {
    return connect(ip.toString().c_str(), port, timeout_ms);
}
int WiFiClientSecure::connect(const char* host, uint16_t port) {
    return connect_secure(host, port, ca_, cert_, key_, static_cast<int32_t>(timeout_ms_));
}
int WiFiClientSecure::connect(const char* host, uint16_t port, int32_t timeout_ms) {
    return connect_secure(host, port, ca_, cert_, key_, timeout_ms);
}
int WiFiClientSecure::connect(IPAddress ip, uint16_t port, const char* rootCABuff, const char* cli_cert,
                              const char* cli_key) {
    return connect_secure(ip.toString().c_str(), port, rootCABuff, cli_cert, cli_key, static_cast<int32_t>(timeout_ms_));
}
int WiFiClientSecure::connect(const char* host, uint16_t port, const char* rootCABuff, const char* cli_cert,
                              const char* cli_key) {
    return connect_secure(host, port, rootCABuff, cli_cert, cli_key, static_cast<int32_t>(timeout_ms_));
}

int WiFiClientSecure::lastError(char* buf, const size_t size) {
    if (!last_tls_error_) return 0;
    if (!buf || !size) return last_tls_error_;
    mbedtls_strerror(last_tls_error_, buf, size);
    if (last_verify_flags_) {
        char info[256];
        int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", last_verify_flags_);
        size_t used = strlen(buf);
        for (int i = 0; i < n; i++)
            if (info[i] == '\n') info[i] = (i == n - 1) ? '\0' : ';';
        if (n > 0 && used + 3 < size) snprintf(buf + used, size - used, ": %s", info);
    }
    return last_tls_error_;
}

void WiFiClientSecure::setInsecure() {
    ca_ = nullptr;
    cert_ = nullptr;
    key_ = nullptr;
    insecure_ = true;
}

void WiFiClientSecure::setCACert(const char* rootCA) {
    ca_ = rootCA;
    if (rootCA) insecure_ = false;
}

void WiFiClientSecure::setCertificate(const char* client_ca) { cert_ = client_ca; }
void WiFiClientSecure::setPrivateKey(const char* private_key) { key_ = private_key; }
