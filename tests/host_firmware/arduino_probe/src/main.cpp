// Host-runtime probe (Arduino flavour): WiFi, NVS via Preferences, mutual TLS via WiFiClientSecure,
// MQTT via PubSubClient. See ../README.md for the NVS keys and the lines printed.
#include <Arduino.h>
#include <Preferences.h>
#include <PubSubClient.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>

static String host, ca, cert, key, user, pass, clientId, subTopic, pubTopic;
static uint16_t port = 8883;
static WiFiClientSecure net;
static PubSubClient mqtt(net);
static bool reportedOversize = false;

static void onMessage(char* topic, uint8_t* payload, unsigned int length) {
    Serial.printf("RX %s %.*s\n", topic, static_cast<int>(length), reinterpret_cast<const char*>(payload));
}

static void onWiFiEvent(arduino_event_id_t event, arduino_event_info_t info) {
    if (event == ARDUINO_EVENT_WIFI_STA_GOT_IP) {
        Serial.printf("WIFI got ip %s\n", IPAddress(info.got_ip.ip_info.ip.addr).toString().c_str());
    } else if (event == ARDUINO_EVENT_WIFI_STA_DISCONNECTED) {
        Serial.printf("WIFI disconnected reason %u\n", info.wifi_sta_disconnected.reason);
    }
}

void setup() {
    Serial.begin(115200);
    Preferences prefs;
    if (!prefs.begin("probe", true)) {
        Serial.println("NVS namespace probe missing");
    }
    host = prefs.getString("host", "localhost");
    port = prefs.getUShort("port", 8883);
    ca = prefs.getString("ca");
    cert = prefs.getString("cert");
    key = prefs.getString("key");
    user = prefs.getString("user");
    pass = prefs.getString("pass");
    clientId = prefs.getString("client_id", "probe");
    subTopic = prefs.getString("sub");
    pubTopic = prefs.getString("pub");
    uint16_t bufferSize = prefs.getUShort("bufsize", MQTT_MAX_PACKET_SIZE);
    size_t blobLength = prefs.getBytesLength("blob");
    unsigned long blobSum = 0;
    if (blobLength) {
        uint8_t* blob = static_cast<uint8_t*>(malloc(blobLength));
        prefs.getBytes("blob", blob, blobLength);
        for (size_t i = 0; i < blobLength; i++) blobSum += blob[i];
        free(blob);
    }
    char idBuffer[32];
    size_t idLength = prefs.getString("client_id", idBuffer, sizeof idBuffer);
    Serial.printf("NVS host=%s port=%u ca_len=%u blob_len=%u blob_sum=%lu id_len=%u has_key=%d\n", host.c_str(), port,
                  ca.length(), static_cast<unsigned>(blobLength), blobSum, static_cast<unsigned>(idLength),
                  prefs.isKey("key") ? 1 : 0);
    prefs.end();

    WiFi.onEvent(onWiFiEvent);
    WiFi.mode(WIFI_STA);
    WiFi.begin("sim-ssid", "sim-password");
    while (WiFi.status() != WL_CONNECTED) delay(20);
    Serial.printf("WIFI connected ip=%s mac=%s\n", WiFi.localIP().toString().c_str(), WiFi.macAddress().c_str());

    net.setCACert(ca.c_str());
    if (cert.length() && key.length()) {
        net.setCertificate(cert.c_str());
        net.setPrivateKey(key.c_str());
    }
    net.setHandshakeTimeout(10);
    mqtt.setBufferSize(bufferSize);
    mqtt.setServer(host.c_str(), port);
    mqtt.setCallback(onMessage);
    mqtt.setSocketTimeout(5);
}

void loop() {
    if (WiFi.status() != WL_CONNECTED) {
        delay(50);
        return;
    }
    if (!mqtt.connected()) {
        bool ok = user.length() ? mqtt.connect(clientId.c_str(), user.c_str(), pass.c_str(), pubTopic.c_str(), 1, true, "offline")
                                : mqtt.connect(clientId.c_str(), pubTopic.c_str(), 1, true, "offline");
        if (!ok) {
            char text[200] = "";
            int tls = net.lastError(text, sizeof text);
            Serial.printf("CONNECT_FAILED state=%d tls=%d %s\n", mqtt.state(), tls, text);
            delay(500);
            return;
        }
        Serial.println("CONNECTED");
        mqtt.subscribe(subTopic.c_str(), 1);
        String hello = String("hello from ") + clientId + " #" + 1;
        Serial.printf("PUBLISH %d\n", mqtt.publish(pubTopic.c_str(), hello.c_str()) ? 1 : 0);
        if (!reportedOversize) {
            reportedOversize = true;
            // One byte more than fits: 5 + 2 + strlen(topic) + length > buffer size.
            unsigned int fit = mqtt.getBufferSize() - 5 - 2 - pubTopic.length();
            String filler;
            for (unsigned int i = 0; i <= fit; i++) filler += 'x';
            Serial.printf("PUBLISH_OVERSIZE %d\n", mqtt.publish(pubTopic.c_str(), filler.c_str()) ? 1 : 0);
            filler.remove(fit);
            Serial.printf("PUBLISH_FITS %d\n", mqtt.publish(pubTopic.c_str(), filler.c_str()) ? 1 : 0);
        }
    }
    mqtt.loop();
}
