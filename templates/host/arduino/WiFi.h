// WiFi.h (arduino-esp32 2.0.17 API, station) for the host runtime, built on our esp_wifi/esp_event
// like the real core. Events run on the default event loop's thread. Approximation: a simulated
// link drop is reported with reason 8 (ASSOC_LEAVE); with setAutoReconnect(true) (the default) the
// station keeps retrying after any disconnect it did not ask for, where the 2.0.17 core only retries
// by itself for reasons >= 200.
#pragma once

#include <stdint.h>

#include "Arduino.h"
#include "IPAddress.h"
#include "WiFiGeneric.h"
#include "WiFiType.h"
#include "WiFiClient.h"

class WiFiClass {
public:
    bool mode(wifi_mode_t m);
    wifi_mode_t getMode();
    wl_status_t begin(const char *ssid, const char *passphrase = nullptr, int32_t channel = 0,
                      const uint8_t *bssid = nullptr, bool connect = true);
    wl_status_t begin(char *ssid, char *passphrase = nullptr, int32_t channel = 0, const uint8_t *bssid = nullptr,
                      bool connect = true) {
        return begin(static_cast<const char *>(ssid), static_cast<const char *>(passphrase), channel, bssid, connect);
    }
    wl_status_t begin();
    bool reconnect();
    bool disconnect(bool wifioff = false, bool eraseap = false);
    bool isConnected();
    bool setAutoReconnect(bool autoReconnect);
    bool getAutoReconnect();
    bool setAutoConnect(bool autoConnect) { (void)autoConnect; return true; }
    uint8_t waitForConnectResult(unsigned long timeoutLength = 60000);
    wl_status_t status();

    IPAddress localIP();
    IPAddress subnetMask();
    IPAddress gatewayIP();
    IPAddress dnsIP(uint8_t dns_no = 0);
    uint8_t *macAddress(uint8_t *mac);
    String macAddress();
    String SSID() const;
    String psk() const;
    uint8_t *BSSID();
    String BSSIDstr();
    int8_t RSSI();
    int32_t channel();
    const char *getHostname();
    bool setHostname(const char *hostname);
    bool setSleep(bool enabled) { (void)enabled; return true; }
    bool persistent(bool persistent) { (void)persistent; return true; }
    void useStaticBuffers(bool bufferMode) { (void)bufferMode; }
    bool setTxPower(int power) { (void)power; return true; }
    int hostByName(const char *aHostname, IPAddress &aResult);

    wifi_event_id_t onEvent(WiFiEventCb cbEvent, arduino_event_id_t event = ARDUINO_EVENT_MAX);
    wifi_event_id_t onEvent(WiFiEventFuncCb cbEvent, arduino_event_id_t event = ARDUINO_EVENT_MAX);
    wifi_event_id_t onEvent(WiFiEventSysCb cbEvent, arduino_event_id_t event = ARDUINO_EVENT_MAX);
    void removeEvent(WiFiEventCb cbEvent, arduino_event_id_t event = ARDUINO_EVENT_MAX);
    void removeEvent(WiFiEventSysCb cbEvent, arduino_event_id_t event = ARDUINO_EVENT_MAX);
    void removeEvent(wifi_event_id_t id);
};

extern WiFiClass WiFi;
