// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// The link: WiFi station, clock, TLS to the broker, MQTT session (identity, last will, birth message,
// subscriptions), publish schedules and message dispatch. Your code lives in the project's src/ (see app.h and
// gen_link.h). What differs between specs (topics, intervals, features) comes from gen_config.h, rendered by gen.
// loop() never waits for the network longer than one connect attempt; every failure is logged in words.

#include <Arduino.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <PubSubClient.h>
#include <Preferences.h>
#include <esp_random.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "date_checking_client.h"
#include "gen_config.h"
#include "gen_link.h"
#if !GEN_LINK_SECRETS_NVS
#include "gen_credentials.h"
#endif
#if GEN_LINK_OTA
#include "ota_update.h"
#endif
#if GEN_LINK_OWN_KEY
#include "provisioning.h"
#endif
#if GEN_LINK_VAR_COUNT > 0
#include "gen_vars.h"
#endif
#include "retry_timing.h"
#include "topic_filter.h"
#if GEN_LINK_LOG
#include "log_publish.h"
#include "log_serial.h"
#define Serial log_serial   // the log over MQTT: gen_link's lines go to the serial port and to log_publish
#endif

// The hooks your application defines (app.h declares them for it): one builder per scheduled publish entry and
// one handler per subscribe entry of the spec, named after the entry.
void app_setup();
void app_loop();
#define GEN_LINK_DECLARE_BUILDER(name, interval_ms) int app_build_##name(char* payload, size_t capacity);
GEN_LINK_SCHEDULES(GEN_LINK_DECLARE_BUILDER)
#define GEN_LINK_DECLARE_HANDLER(name, source, qos, max_payload) \
    void app_on_##name(const char* topic, const uint8_t* payload, size_t length);
GEN_LINK_SUBSCRIBES(GEN_LINK_DECLARE_HANDLER)

namespace {

// ---- Settings ---------------------------------------------------------------------------------------------

#define GEN_LINK_PUBLISH_INDEX(name, source, qos, retain, max_payload) PUBLISH_##name,
enum PublishIndex : size_t {
    GEN_LINK_PUBLISHES(GEN_LINK_PUBLISH_INDEX)
    PUBLISH_COUNT
};
#define GEN_LINK_SUBSCRIBE_INDEX(name, source, qos, max_payload) SUBSCRIBE_##name,
enum SubscribeIndex : size_t {
    GEN_LINK_SUBSCRIBES(GEN_LINK_SUBSCRIBE_INDEX)
    SUBSCRIBE_COUNT
};

// Everything that tells one device from another. Every pointer stays valid for the life of the program
// (PubSubClient and WiFiClientSecure keep the pointers they are given).
struct Settings {
    const char* device_id;
    const char* wifi_ssid;
    const char* wifi_password;
#if GEN_LINK_USES_PASSWORD
    const char* mqtt_password;
#endif
    const char* ca_pem;
#if GEN_LINK_OWN_KEY
    const char* bootstrap_password;   // the key and certificates are the device's own (provisioning.h)
#elif GEN_LINK_USES_CLIENT_CERT
    const char* cert_pem;
    const char* key_pem;
#endif
    const char* status_topic;
#if GEN_LINK_PUBLISH_COUNT > 0
    const char* publish_topics[PUBLISH_COUNT];
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    const char* subscribe_filters[SUBSCRIBE_COUNT];
#endif
#if GEN_LINK_OTA
    const char* ota_topic;
    const char* firmware_topic;
#endif
};

#if GEN_LINK_SECRETS_NVS
Settings settings;
#if GEN_LINK_VAR_COUNT > 0
gen_vars_t vars;   // the spec's vars:, this device's values, read from NVS as text

const char* var_string(const char* text) {
    return text;
}

int32_t var_int(const char* text) {
    return static_cast<int32_t>(strtol(text, nullptr, 10));   // written by gen as a decimal int32
}

bool var_bool(const char* text) {
    return strcmp(text, "1") == 0;                            // written by gen as 1 or 0
}
#endif

// Reads the device's identity, credentials and topics from its NVS partition (namespace NVS_NAMESPACE),
// written by `gen generate` as nvs.bin. The strings are copied once and never freed.
const char* read_nvs_string(Preferences& nvs, const char* key, size_t max_length, bool* ok) {
    if (!nvs.isKey(key)) {
        Serial.printf("[nvs] missing key \"%s\" in namespace \"%s\"; flash this device's nvs.bin\n", key, NVS_NAMESPACE);
        *ok = false;
        return "";
    }
    String value = nvs.getString(key);
    if (value.length() > max_length) {
        Serial.printf("[nvs] \"%s\" is %u bytes; this firmware holds at most %u\n", key,
                      static_cast<unsigned>(value.length()), static_cast<unsigned>(max_length));
        *ok = false;
        return "";
    }
    char* copy = strdup(value.c_str());
    if (copy == nullptr) {
        Serial.printf("[nvs] out of memory reading \"%s\"\n", key);
        *ok = false;
        return "";
    }
    return copy;
}

// PEM text is stored as a NUL-terminated blob (it can be longer than an NVS string).
const char* read_nvs_pem(Preferences& nvs, const char* key, bool* ok) {
    size_t length = nvs.isKey(key) ? nvs.getBytesLength(key) : 0;
    if (length == 0) {
        Serial.printf("[nvs] missing key \"%s\" in namespace \"%s\"; flash this device's nvs.bin\n", key, NVS_NAMESPACE);
        *ok = false;
        return "";
    }
    char* pem = static_cast<char*>(malloc(length));
    if (pem == nullptr || nvs.getBytes(key, pem, length) != length || pem[length - 1] != '\0') {
        Serial.printf("[nvs] \"%s\" is not a NUL-terminated PEM blob\n", key);
        free(pem);
        *ok = false;
        return "";
    }
    return pem;
}

bool load_settings() {
    Preferences nvs;
    if (!nvs.begin(NVS_NAMESPACE, true)) {
        Serial.printf("[nvs] cannot open namespace \"%s\"; flash this device's nvs.bin at 0x%x\n", NVS_NAMESPACE,
                      NVS_PARTITION_OFFSET);
        return false;
    }
    bool ok = true;
    settings.device_id = read_nvs_string(nvs, NVS_KEY_DEVICE_ID, DEVICE_ID_CAPACITY, &ok);
    settings.wifi_ssid = read_nvs_string(nvs, NVS_KEY_WIFI_SSID, WIFI_SSID_CAPACITY, &ok);
    settings.wifi_password = read_nvs_string(nvs, NVS_KEY_WIFI_PASSWORD, WIFI_PASSWORD_CAPACITY, &ok);
#if GEN_LINK_USES_PASSWORD
    settings.mqtt_password = read_nvs_string(nvs, NVS_KEY_MQTT_PASSWORD, MQTT_PASSWORD_CAPACITY, &ok);
#endif
    settings.ca_pem = read_nvs_pem(nvs, NVS_KEY_CA_PEM, &ok);
#if GEN_LINK_OWN_KEY
    settings.bootstrap_password = read_nvs_string(nvs, NVS_KEY_BOOTSTRAP_PASSWORD, BOOTSTRAP_PASSWORD_CAPACITY, &ok);
#elif GEN_LINK_USES_CLIENT_CERT
    settings.cert_pem = read_nvs_pem(nvs, NVS_KEY_CERT_PEM, &ok);
    settings.key_pem = read_nvs_pem(nvs, NVS_KEY_KEY_PEM, &ok);
#endif
    settings.status_topic = read_nvs_string(nvs, NVS_KEY_STATUS_TOPIC, TOPIC_CAPACITY, &ok);
    // Each topic's source in gen_config.h is its NVS key (secrets: nvs).
#define GEN_LINK_READ_PUBLISH(name, source, qos, retain, max_payload) \
    settings.publish_topics[PUBLISH_##name] = read_nvs_string(nvs, source, TOPIC_CAPACITY, &ok);
    GEN_LINK_PUBLISHES(GEN_LINK_READ_PUBLISH)
#define GEN_LINK_READ_SUBSCRIBE(name, source, qos, max_payload) \
    settings.subscribe_filters[SUBSCRIBE_##name] = read_nvs_string(nvs, source, TOPIC_CAPACITY, &ok);
    GEN_LINK_SUBSCRIBES(GEN_LINK_READ_SUBSCRIBE)
#if GEN_LINK_OTA
    settings.ota_topic = read_nvs_string(nvs, NVS_KEY_OTA_TOPIC, TOPIC_CAPACITY, &ok);
    settings.firmware_topic = read_nvs_string(nvs, NVS_KEY_FIRMWARE_TOPIC, TOPIC_CAPACITY, &ok);
#endif
    // Each var's source in gen_config.h is its NVS key (secrets: nvs); the value is text.
#define GEN_LINK_READ_VAR(name, type, source) vars.name = var_##type(read_nvs_string(nvs, source, VAR_CAPACITY, &ok));
    GEN_LINK_VARS(GEN_LINK_READ_VAR)
    nvs.end();
    return ok;
}
#else
// Each topic's source in gen_config.h is the topic itself (secrets: embed).
#define GEN_LINK_PUBLISH_TOPIC(name, source, qos, retain, max_payload) source,
#define GEN_LINK_SUBSCRIBE_FILTER(name, source, qos, max_payload) source,
const Settings settings = {
    DEVICE_ID,
    WIFI_SSID,
    WIFI_PASSWORD,
#if GEN_LINK_USES_PASSWORD
    MQTT_PASSWORD,
#endif
    CA_PEM,
#if GEN_LINK_OWN_KEY
    BOOTSTRAP_PASSWORD,
#elif GEN_LINK_USES_CLIENT_CERT
    CLIENT_CERT_PEM,
    CLIENT_KEY_PEM,
#endif
    STATUS_TOPIC,
#if GEN_LINK_PUBLISH_COUNT > 0
    {GEN_LINK_PUBLISHES(GEN_LINK_PUBLISH_TOPIC)},
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    {GEN_LINK_SUBSCRIBES(GEN_LINK_SUBSCRIBE_FILTER)},
#endif
#if GEN_LINK_OTA
    OTA_TOPIC,
    FIRMWARE_TOPIC,
#endif
};

#if GEN_LINK_VAR_COUNT > 0
// Each var's source in gen_config.h is its value (secrets: embed).
#define GEN_LINK_VAR_VALUE(name, type, source) source,
const gen_vars_t vars = {GEN_LINK_VARS(GEN_LINK_VAR_VALUE)};
#endif

bool load_settings() {
    return true;  // compiled in (secrets: embed)
}
#endif

// ---- Retry timing -----------------------------------------------------------------------------------------

// ---- WiFi -------------------------------------------------------------------------------------------------

const char* wifi_reason_text(unsigned reason) {
    switch (reason) {
        case 2: return "AUTH_EXPIRE";
        case 3: return "AUTH_LEAVE";
        case 4: return "ASSOC_EXPIRE";
        case 8: return "ASSOC_LEAVE";
        case 15: return "4WAY_HANDSHAKE_TIMEOUT (wrong password?)";
        case 200: return "BEACON_TIMEOUT";
        case 201: return "NO_AP_FOUND (SSID not in range?)";
        case 202: return "AUTH_FAIL (wrong password?)";
        case 203: return "ASSOC_FAIL";
        case 204: return "HANDSHAKE_TIMEOUT (wrong password?)";
        case 205: return "CONNECTION_FAIL";
        default: return "see wifi_err_reason_t";
    }
}

volatile bool wifi_has_ip = false;
backoff_t wifi_backoff = {WIFI_RETRY_FIRST_MS, WIFI_RETRY_CAP_MS, 0};
uint32_t wifi_next_retry_ms = 0;

void on_wifi_event(arduino_event_id_t event, arduino_event_info_t info) {
    switch (event) {
        case ARDUINO_EVENT_WIFI_STA_CONNECTED:
            Serial.printf("[wifi] associated with \"%s\"\n", settings.wifi_ssid);
            break;
        case ARDUINO_EVENT_WIFI_STA_GOT_IP:
            wifi_has_ip = true;
            Serial.printf("[wifi] got IP %s\n", WiFi.localIP().toString().c_str());
            break;
        case ARDUINO_EVENT_WIFI_STA_DISCONNECTED: {
            const unsigned reason = info.wifi_sta_disconnected.reason;
            if (wifi_has_ip) {
                Serial.printf("[wifi] lost connection: reason %u %s\n", reason, wifi_reason_text(reason));
            } else {
                Serial.printf("[wifi] connect failed: reason %u %s\n", reason, wifi_reason_text(reason));
            }
            wifi_has_ip = false;
            break;
        }
        default:
            break;
    }
}

void start_wifi() {
    WiFi.mode(WIFI_STA);
    WiFi.onEvent(on_wifi_event, ARDUINO_EVENT_WIFI_STA_CONNECTED);
    WiFi.onEvent(on_wifi_event, ARDUINO_EVENT_WIFI_STA_GOT_IP);
    WiFi.onEvent(on_wifi_event, ARDUINO_EVENT_WIFI_STA_DISCONNECTED);
    WiFi.setAutoReconnect(true);
    Serial.printf("[wifi] joining \"%s\"\n", settings.wifi_ssid);
    WiFi.begin(settings.wifi_ssid, settings.wifi_password);
    wifi_next_retry_ms = millis() + backoff_next_delay_ms(&wifi_backoff, esp_random()) + WIFI_ASSOCIATE_TIMEOUT_MS;
}

// The core reconnects on its own; this restarts the attempt when it stays down (AP rebooted, DHCP lost).
void maintain_wifi(uint32_t now) {
    if (WiFi.status() == WL_CONNECTED) {
        backoff_reset(&wifi_backoff);
        return;
    }
    if (!retry_due(now, wifi_next_retry_ms)) {
        return;
    }
    const uint32_t delay_ms = backoff_next_delay_ms(&wifi_backoff, esp_random());
    Serial.printf("[wifi] still not connected; retrying (next check in %lu ms)\n",
                  static_cast<unsigned long>(delay_ms + WIFI_ASSOCIATE_TIMEOUT_MS));
    WiFi.reconnect();
    wifi_next_retry_ms = now + delay_ms + WIFI_ASSOCIATE_TIMEOUT_MS;
}

// ---- Clock ------------------------------------------------------------------------------------------------

// SNTP starts with the first IP address, and MQTT only once it has set the clock: the broker certificate's dates
// are checked against it (DateCheckingWiFiClientSecure), and before the first sync the clock says 1970, when no
// certificate is valid yet. While no time source answers the device stays offline, says so every
// TIME_SYNC_WAIT_MS, and SNTP keeps asking.
enum class ClockState { NotStarted, Waiting, Done };
ClockState clock_state = ClockState::NotStarted;
uint32_t clock_started_ms = 0;
uint32_t clock_reported_ms = 0;

void maintain_clock(uint32_t now) {
    if (clock_state == ClockState::NotStarted) {
        if (!wifi_has_ip) {
            return;
        }
        configTime(0, 0, NTP_SERVERS[0], NTP_SERVERS[1], NTP_SERVERS[2]);
        clock_state = ClockState::Waiting;
        clock_started_ms = now;
        clock_reported_ms = now;
        Serial.printf("[time] syncing with %s\n", NTP_SERVERS[0]);
        return;
    }
    if (clock_state != ClockState::Waiting) {
        return;
    }
    struct tm utc;
    if (getLocalTime(&utc, 0)) {
        char text[32];
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
        Serial.printf("[time] synchronised: %s\n", text);
        clock_state = ClockState::Done;
    } else if (now - clock_reported_ms >= TIME_SYNC_WAIT_MS) {
        clock_reported_ms = now;
        Serial.printf("[time] no answer from %s for %lu s; MQTT waits for the clock (the broker certificate's "
                      "dates cannot be checked without it)\n", NTP_SERVERS[0],
                      static_cast<unsigned long>((now - clock_started_ms) / 1000));
    }
}

// ---- MQTT -------------------------------------------------------------------------------------------------

DateCheckingWiFiClientSecure tls;   // WiFiClientSecure, plus the certificate dates (date_checking_client.h)
PubSubClient mqtt(tls);
backoff_t mqtt_backoff = {MQTT_RETRY_FIRST_MS, MQTT_RETRY_CAP_MS, 0};
uint32_t mqtt_next_attempt_ms = 0;
bool mqtt_was_connected = false;
size_t broker_index = 0;   // the MQTT_HOSTS entry dialled: the next one after a lost connection or a failed connect

// PubSubClient::setServer keeps the pointer: MQTT_HOSTS holds string literals.
const char* broker_host() {
    return MQTT_HOSTS[broker_index];
}

void next_broker() {
    broker_index = (broker_index + 1) % MQTT_HOST_COUNT;
}

// Connected as this device (with its own key, the bootstrap login may only ask for a certificate).
bool mqtt_online() {
#if GEN_LINK_OWN_KEY
    return mqtt.connected() && provisioning_credential()->kind != CREDENTIAL_BOOTSTRAP;
#else
    return mqtt.connected();
#endif
}

const char* mqtt_state_text(int state) {
    switch (state) {
        case MQTT_CONNECTION_TIMEOUT: return "CONNECTION_TIMEOUT (no answer from the broker)";
        case MQTT_CONNECTION_LOST: return "CONNECTION_LOST";
        case MQTT_CONNECT_FAILED: return "CONNECT_FAILED (TCP or TLS)";
        case MQTT_DISCONNECTED: return "DISCONNECTED";
        case MQTT_CONNECTED: return "CONNECTED";
        case MQTT_CONNECT_BAD_PROTOCOL: return "BAD_PROTOCOL (broker refused MQTT 3.1.1)";
        case MQTT_CONNECT_BAD_CLIENT_ID: return "BAD_CLIENT_ID (broker refused the client id)";
        case MQTT_CONNECT_UNAVAILABLE: return "UNAVAILABLE (broker unavailable)";
        case MQTT_CONNECT_BAD_CREDENTIALS: return "BAD_CREDENTIALS (bad username or password)";
        case MQTT_CONNECT_UNAUTHORIZED: return "UNAUTHORIZED (not authorised)";
        default: return "unknown state";
    }
}
#if GEN_LINK_OWN_KEY

// ---- Provisioning: this device's key is made here, its certificates come over MQTT (provisioning.h) ------------

char provisioning_request[PROVISION_REQUEST_MAX];

void log_provisioning(const char* line) {
    Serial.printf("%s\n", line);
}

// A real clock (SNTP synchronised): renewal by expiry waits for one.
time_t synchronised_utc() {
    struct tm utc;
    return getLocalTime(&utc, 0) ? time(nullptr) : 0;
}

// The credential to dial with: its port, CA and client certificate (none for the bootstrap login). WiFiClientSecure
// keeps the pointers and parses them at each connect; provisioning.c keeps them valid until the next change.
void apply_credential(const credential_t* credential) {
    tls.setCACert(credential->ca_pem);
    tls.setCertificate(credential->cert_pem);
    tls.setPrivateKey(credential->key_pem);
    mqtt.setServer(broker_host(), credential->port);
}

void run_provisioning(uint32_t now) {
    if (provisioning_switch_credential()) {
        Serial.println("[cred] reconnecting with the new credential");
        mqtt.disconnect();
        tls.stop();
        mqtt_was_connected = false;  // not a lost connection: dial again at once
        mqtt_next_attempt_ms = now;
        return;
    }
    const size_t length = provisioning_poll(now, synchronised_utc(), provisioning_request, sizeof provisioning_request);
    if (length == 0) {
        return;
    }
    const char* topic = provisioning_credential()->request_topic;
    if (mqtt.publish(topic, reinterpret_cast<const uint8_t*>(provisioning_request), length)) {
        Serial.printf("[mqtt] published %u bytes to %s\n", static_cast<unsigned>(length), topic);
    } else {
        Serial.printf("[mqtt] publish failed on %s: state %d %s\n", topic, mqtt.state(), mqtt_state_text(mqtt.state()));
    }
}
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0

// A received message, copied out of PubSubClient's buffer so a handler may publish while it runs.
char inbound_topic[INBOUND_TOPIC_CAPACITY + 1];
uint8_t inbound_payload[INBOUND_PAYLOAD_CAPACITY + 1];

struct Subscription {
    int qos;
    size_t max_payload;
    void (*handler)(const char* topic, const uint8_t* payload, size_t length);
};

#define GEN_LINK_SUBSCRIPTION(name, source, qos, max_payload) {qos, max_payload, app_on_##name},
const Subscription subscriptions[SUBSCRIBE_COUNT] = {
    GEN_LINK_SUBSCRIBES(GEN_LINK_SUBSCRIPTION)
};
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0 || GEN_LINK_OWN_KEY || GEN_LINK_OTA

void on_message(char* topic, uint8_t* payload, unsigned int length) {
#if GEN_LINK_OWN_KEY
    if (strcmp(topic, provisioning_credential()->response_topic) == 0) {
        Serial.printf("[mqtt] received %u bytes on %s\n", length, topic);
        provisioning_message(reinterpret_cast<const char*>(payload), length, millis());
        return;
    }
#endif
#if GEN_LINK_OTA
    if (ota_on_message(topic, payload, length)) {
        return;
    }
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    for (size_t i = 0; i < SUBSCRIBE_COUNT; ++i) {
        if (!topic_filter_matches(settings.subscribe_filters[i], topic)) {
            continue;
        }
        const size_t topic_length = strlen(topic);
        if (topic_length > INBOUND_TOPIC_CAPACITY) {
            Serial.printf("[mqtt] dropped a message on %s: the topic is longer than %u bytes\n", topic,
                          static_cast<unsigned>(INBOUND_TOPIC_CAPACITY));
            return;
        }
        if (length > subscriptions[i].max_payload) {
            Serial.printf("[mqtt] dropped %u bytes on %s: larger than max_payload %u\n", length, topic,
                          static_cast<unsigned>(subscriptions[i].max_payload));
            return;
        }
        Serial.printf("[mqtt] received %u bytes on %s\n", length, topic);
        memcpy(inbound_topic, topic, topic_length + 1);
        memcpy(inbound_payload, payload, length);
        inbound_payload[length] = '\0';  // handlers may treat the payload as text
        subscriptions[i].handler(inbound_topic, inbound_payload, length);
        return;
    }
#endif
    Serial.printf("[mqtt] message on %s matches no subscription; ignored\n", topic);
}
#endif

void configure_mqtt() {
    tls.setCACert(settings.ca_pem);
#if GEN_LINK_USES_CLIENT_CERT && !GEN_LINK_OWN_KEY
    tls.setCertificate(settings.cert_pem);
    tls.setPrivateKey(settings.key_pem);
#endif
    tls.setHandshakeTimeout(TLS_HANDSHAKE_TIMEOUT_S);
    mqtt.setServer(broker_host(), MQTT_PORT);  // by name: the TLS stack checks it against the broker certificate
    mqtt.setKeepAlive(MQTT_KEEPALIVE_S);
    mqtt.setSocketTimeout(MQTT_SOCKET_TIMEOUT_S);
    if (!mqtt.setBufferSize(MQTT_BUFFER_SIZE)) {
        Serial.printf("[mqtt] cannot allocate a %u-byte buffer (free heap %u)\n", MQTT_BUFFER_SIZE,
                      static_cast<unsigned>(ESP.getFreeHeap()));
    }
#if GEN_LINK_SUBSCRIBE_COUNT > 0 || GEN_LINK_OWN_KEY || GEN_LINK_OTA
    mqtt.setCallback(on_message);
#endif
}

// WiFiClientSecure sets lastError only once it dials: -1 when TCP fails. Arduino-ESP32 3.x returns 0 when the
// name does not resolve and keeps the previous attempt's code, so a TLS code is trusted only if the name resolves.
bool broker_unreachable(int tls_code) {
    IPAddress address;
    return tls_code == 0 || tls_code == -1 || !WiFi.hostByName(broker_host(), address);
}

// Returns whether the broker refused us (TLS or CONNACK), rather than not being reached.
bool log_connect_failure(uint16_t port) {
    const int state = mqtt.state();
    char tls_error[128] = "";
    const int tls_code = tls.lastError(tls_error, sizeof tls_error);
    if (state == MQTT_CONNECT_FAILED && broker_unreachable(tls_code)) {
        Serial.printf("[mqtt] connect failed: state %d %s; could not resolve or reach %s:%u (no such name, "
                      "unreachable, refused or timed out)\n", state, mqtt_state_text(state), broker_host(), port);
        return false;
    }
    if (state == MQTT_CONNECT_FAILED) {
        Serial.printf("[mqtt] connect failed: state %d %s; TLS error -0x%04x: %s\n", state, mqtt_state_text(state),
                      static_cast<unsigned>(-tls_code), tls_error);
    } else {
        Serial.printf("[mqtt] connect failed: state %d %s\n", state, mqtt_state_text(state));
    }
    return state != MQTT_CONNECTION_TIMEOUT;
}

// Birth message and subscriptions: after every connect (the broker keeps no session for a clean session).
void announce_and_subscribe() {
    if (mqtt.publish(settings.status_topic, STATUS_ONLINE, true)) {
        Serial.printf("[mqtt] published %u bytes to %s\n", static_cast<unsigned>(sizeof STATUS_ONLINE - 1),
                      settings.status_topic);
    } else {
        Serial.printf("[mqtt] publish failed on %s\n", settings.status_topic);
    }
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    for (size_t i = 0; i < SUBSCRIBE_COUNT; ++i) {
        if (mqtt.subscribe(settings.subscribe_filters[i], subscriptions[i].qos)) {
            Serial.printf("[mqtt] subscribed to %s (qos %d)\n", settings.subscribe_filters[i], subscriptions[i].qos);
        } else {
            Serial.printf("[mqtt] subscribe failed on %s: state %d %s\n", settings.subscribe_filters[i],
                          mqtt.state(), mqtt_state_text(mqtt.state()));
        }
    }
#endif
#if GEN_LINK_OTA
    ota_on_connected();          // confirms an image on trial: it has reached the broker
#endif
}

// At most one connect attempt per call, the longest loop() is held: the TCP connect (WiFiClientSecure's own
// timeout), the TLS handshake (TLS_HANDSHAKE_TIMEOUT_S) and the CONNACK (MQTT_SOCKET_TIMEOUT_S).
void maintain_mqtt(uint32_t now) {
    if (mqtt.connected()) {
        mqtt.loop();
#if GEN_LINK_OWN_KEY
        run_provisioning(now);
#endif
        return;
    }
    if (mqtt_was_connected) {
        mqtt_was_connected = false;
        Serial.printf("[mqtt] connection lost: state %d %s\n", mqtt.state(), mqtt_state_text(mqtt.state()));
        next_broker();
        mqtt_next_attempt_ms = now + backoff_next_delay_ms(&mqtt_backoff, esp_random());
        return;
    }
    if (!wifi_has_ip || clock_state != ClockState::Done || !retry_due(now, mqtt_next_attempt_ms)) {
        return;
    }
#if GEN_LINK_OWN_KEY
    provisioning_switch_credential();  // whatever changed, this attempt dials the current credential
    const credential_t* credential = provisioning_credential();
    const bool bootstrap = credential->kind == CREDENTIAL_BOOTSTRAP;
    apply_credential(credential);
    Serial.printf("[mqtt] connecting to %s:%u as %s%s\n", broker_host(), credential->port, settings.device_id,
                  bootstrap ? " (bootstrap login, to get a certificate)" : "");
    // The bootstrap login leaves no will and no birth message: the device is not online as itself yet.
    const bool connected = bootstrap
        ? mqtt.connect(settings.device_id, credential->username, credential->password)
        : mqtt.connect(settings.device_id, nullptr, nullptr,  // mTLS: the broker takes the username from the cert
                       settings.status_topic, STATUS_WILL_QOS, true, STATUS_OFFLINE, MQTT_CLEAN_SESSION);
    if (!connected) {
        provisioning_connect_failed(log_connect_failure(credential->port), millis());
        next_broker();
        const uint32_t delay_ms = backoff_next_delay_ms(&mqtt_backoff, esp_random());
        Serial.printf("[mqtt] retrying in %lu ms\n", static_cast<unsigned long>(delay_ms));
        mqtt_next_attempt_ms = millis() + delay_ms;
        return;
    }
    if (bootstrap) {
        Serial.printf("[cred] connected to %s:%u with the bootstrap login\n", broker_host(), credential->port);
    } else {
        Serial.printf("[mqtt] connected to %s:%u as %s\n", broker_host(), credential->port, settings.device_id);
    }
    mqtt_was_connected = true;
    backoff_reset(&mqtt_backoff);
    if (!bootstrap) {
        announce_and_subscribe();
    }
    if (!mqtt.subscribe(credential->response_topic, 1)) {
        Serial.printf("[mqtt] subscribe failed on %s\n", credential->response_topic);
    }
    provisioning_connected(millis());
#else
    mqtt.setServer(broker_host(), MQTT_PORT);
    Serial.printf("[mqtt] connecting to %s:%u as %s\n", broker_host(), MQTT_PORT, settings.device_id);
    const bool connected = mqtt.connect(settings.device_id,
#if GEN_LINK_USES_PASSWORD
                                        settings.device_id, settings.mqtt_password,
#else
                                        nullptr, nullptr,  // mTLS: the broker takes the username from the cert
#endif
                                        settings.status_topic, STATUS_WILL_QOS, true, STATUS_OFFLINE,
                                        MQTT_CLEAN_SESSION);
    if (!connected) {
        log_connect_failure(MQTT_PORT);
        next_broker();
        const uint32_t delay_ms = backoff_next_delay_ms(&mqtt_backoff, esp_random());
        Serial.printf("[mqtt] retrying in %lu ms\n", static_cast<unsigned long>(delay_ms));
        mqtt_next_attempt_ms = millis() + delay_ms;
        return;
    }
    Serial.printf("[mqtt] connected to %s:%u as %s\n", broker_host(), MQTT_PORT, settings.device_id);
    mqtt_was_connected = true;
    backoff_reset(&mqtt_backoff);
    announce_and_subscribe();
#endif
}

#if GEN_LINK_PUBLISH_COUNT > 0
// ---- Publishing -------------------------------------------------------------------------------------------

struct Publication {
    bool retain;
    size_t max_payload;
};

#define GEN_LINK_PUBLICATION(name, source, qos, retain, max_payload) {retain, max_payload},
const Publication publications[PUBLISH_COUNT] = {
    GEN_LINK_PUBLISHES(GEN_LINK_PUBLICATION)
};

bool publish_to(PublishIndex index, const uint8_t* payload, size_t length) {
    const char* topic = settings.publish_topics[index];
    if (length > publications[index].max_payload) {
        Serial.printf("[mqtt] not sent to %s: %u bytes is more than max_payload %u\n", topic,
                      static_cast<unsigned>(length), static_cast<unsigned>(publications[index].max_payload));
        return false;
    }
    if (!mqtt_online()) {
        Serial.printf("[mqtt] not sent to %s: not connected\n", topic);
        return false;
    }
    if (!mqtt.publish(topic, payload, length, publications[index].retain)) {
        Serial.printf("[mqtt] publish failed on %s: state %d %s\n", topic, mqtt.state(), mqtt_state_text(mqtt.state()));
        return false;
    }
    Serial.printf("[mqtt] published %u bytes to %s\n", static_cast<unsigned>(length), topic);
    return true;
}
#endif
#if GEN_LINK_SCHEDULE_COUNT > 0

// A payload built by the application on a fixed interval (the spec's `interval`).
struct Schedule {
    PublishIndex publication;
    uint32_t interval_ms;
    int (*build)(char* payload, size_t capacity);
    uint32_t next_ms;
};

#define GEN_LINK_SCHEDULE(name, interval_ms) {PUBLISH_##name, interval_ms, app_build_##name, 0},
Schedule schedules[] = {
    GEN_LINK_SCHEDULES(GEN_LINK_SCHEDULE)
};

char outbound_payload[OUTBOUND_PAYLOAD_CAPACITY + 1];

void run_schedules(uint32_t now) {
    for (Schedule& schedule : schedules) {
        if (!mqtt_online() || !retry_due(now, schedule.next_ms)) {
            continue;
        }
        schedule.next_ms = now + schedule.interval_ms;
        const size_t capacity = publications[schedule.publication].max_payload + 1;
        const int length = schedule.build(outbound_payload, capacity);
        if (length < 0) {
            continue;  // the application has nothing to send this time
        }
        if (static_cast<size_t>(length) >= capacity) {
            Serial.printf("[app] payload for %s needs %d bytes; max_payload is %u\n",
                          settings.publish_topics[schedule.publication], length, static_cast<unsigned>(capacity - 1));
            continue;
        }
        publish_to(schedule.publication, reinterpret_cast<const uint8_t*>(outbound_payload),
                   static_cast<size_t>(length));
    }
}
#endif

}  // namespace

// ---- What gen_link.h and app.h offer the application -------------------------------------------------------

extern "C" const char* gen_link_device_id(void) {
    return settings.device_id;
}

extern "C" bool gen_link_connected(void) {
    return mqtt_online();
}

extern "C" bool gen_link_publish(const char* name, const void* payload, size_t length) {
#define GEN_LINK_PUBLISH_BY_NAME(entry, source, qos, retain, max_payload) \
    if (strcmp(name, #entry) == 0) {                                  \
        return publish_to(PUBLISH_##entry, static_cast<const uint8_t*>(payload), length); \
    }
    GEN_LINK_PUBLISHES(GEN_LINK_PUBLISH_BY_NAME)
    Serial.printf("[mqtt] not sent: the spec has no publish entry named \"%s\"\n", name);
    (void)payload;
    (void)length;
    return false;
}

extern "C" void gen_link_log(gen_link_log_level_t level, const char* format, ...) {
    char text[GEN_LINK_LOG_TEXT_CAPACITY];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    static const char letters[] = "EWID";   // ESP-IDF's letters; log_publish_level_of reads the line's level back
    const int index = level >= GEN_LINK_LOG_ERROR && level <= GEN_LINK_LOG_DEBUG ? level - 1 : 3;
    Serial.printf("%c (%lu) app: %s\n", letters[index], static_cast<unsigned long>(millis()), text);
}

const char* device_id() {
    return settings.device_id;
}

#if GEN_LINK_VAR_COUNT > 0
extern "C" const gen_vars_t* gen_vars(void) {
    return &vars;
}
#endif

bool mqtt_is_connected() {
    return mqtt_online();
}

#define GEN_LINK_DEFINE_PUBLISH(name, source, qos, retain, max_payload) \
    bool publish_##name(const uint8_t* payload, size_t length) { return publish_to(PUBLISH_##name, payload, length); }
GEN_LINK_PUBLISHES(GEN_LINK_DEFINE_PUBLISH)

// ---- Start and loop ---------------------------------------------------------------------------------------

#if GEN_LINK_LOG
static bool publish_log_line(const char* topic, const char* line, size_t length) {
    return mqtt.publish(topic, reinterpret_cast<const uint8_t*>(line), static_cast<unsigned int>(length), false);
}
#endif

extern "C" void gen_link_start(void) {
    Serial.begin(115200);
    Serial.println();
    if (!load_settings()) {
        Serial.println("[boot] halted: the device settings are incomplete");
        for (;;) {
            delay(1000);
        }
    }
#if GEN_LINK_LOG
    log_publish_begin(settings.device_id);
#endif
    Serial.printf("[boot] device %s (%s)\n", settings.device_id, GEN_LINK_SUMMARY);
#if GEN_LINK_OWN_KEY
    const provisioning_settings_t provisioning = {settings.device_id, settings.bootstrap_password, settings.ca_pem,
                                                  MQTT_PORT, MQTT_PROVISION_PORT, log_provisioning};
    if (!provisioning_begin(&provisioning)) {
        Serial.println("[boot] halted: the credentials partition cannot be used");
        for (;;) {
            delay(1000);
        }
    }
#endif
#if GEN_LINK_OTA
    ota_begin({settings.device_id, settings.ca_pem, settings.cert_pem, settings.key_pem, settings.ota_topic, settings.firmware_topic}, mqtt);
#endif
    app_setup();
    configure_mqtt();
    start_wifi();
}

extern "C" void gen_link_loop(void) {
    const uint32_t now = millis();
    maintain_wifi(now);
    maintain_clock(now);
    maintain_mqtt(now);
#if GEN_LINK_LOG
    if (mqtt.connected()) {
        log_publish_flush(publish_log_line);
    }
#endif
#if GEN_LINK_SCHEDULE_COUNT > 0
    run_schedules(now);
#endif
#if GEN_LINK_OTA
    ota_loop(now);
#endif
    app_loop();
    delay(10);  // yield to the WiFi and TCP/IP tasks
}

#ifndef GEN_LINK_OWN_MAIN
// The Arduino entry points. An app that wants its own setup() and loop() builds with -D GEN_LINK_OWN_MAIN
// (build_flags:) and calls gen_link_start() and gen_link_loop() from them.
void setup() {
    gen_link_start();
}

void loop() {
    gen_link_loop();
}
#endif
