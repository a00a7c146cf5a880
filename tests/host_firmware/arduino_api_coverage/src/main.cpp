// Calls every Arduino-flavour API templates/host/README.md lists: it must compile (-Werror) and link.
#include <Arduino.h>
#include <Preferences.h>
#include <PubSubClient.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <esp_mac.h>
#include <nvs_flash.h>

static void cb1(arduino_event_id_t) {}
static void cb3(arduino_event_t *) {}

void setup() {
    Serial.begin(115200);
    Serial.print("x"); Serial.print(String("s")); Serial.print('c'); Serial.print(1); Serial.print(2u);
    Serial.print(3L); Serial.print(4UL); Serial.print(5LL); Serial.print(6ULL); Serial.print(1.5); Serial.print(F("f"));
    Serial.println(); Serial.println("x"); Serial.println(1.25, 3); Serial.printf("%d\n", 1);
    Serial.write((uint8_t)'a'); Serial.write("abc"); Serial.write((const uint8_t *)"ab", 2);
    (void)Serial.available(); (void)Serial.read(); (void)Serial.peek(); Serial.flush();
    (void)Serial.readStringUntil('\n'); (void)Serial.readString(); char b[4]; (void)Serial.readBytes(b, 0);
    String s("a"), t(1), u(2u), v(3L), w(4UL), x(1.5f), y(2.5, 3), z('c');
    s += "b"; s += t; s += 'c'; s += 5; s = s + "x" + 1 + 2u + 3L + 4UL + 1.5f + 2.5 + 'c';
    s = "a" + s; (void)s.length(); (void)s.isEmpty(); s.reserve(10); (void)s.indexOf('a'); (void)s.indexOf("a");
    (void)s.substring(1); (void)s.substring(1, 2); (void)s.toInt(); (void)s.toFloat(); (void)s.startsWith("a");
    (void)s.endsWith("a"); s.trim(); s.toLowerCase(); s.toUpperCase(); s.replace("a", "b"); s.replace('a', 'b');
    s.remove(0); s.remove(0, 1); (void)(s == "a"); (void)(s != t); (void)s.equalsIgnoreCase(t); (void)s.charAt(0);
    s.setCharAt(0, 'a'); char buf[8]; s.toCharArray(buf, sizeof buf); s.getBytes((unsigned char *)buf, 8);
    (void)s.lastIndexOf('a'); (void)s.compareTo(t); (void)s.toDouble(); (void)s.c_str();
    (void)millis(); (void)micros(); delay(0); delayMicroseconds(0); yield(); (void)random(10); (void)random(1, 10);
    randomSeed(1); (void)map(1, 0, 10, 0, 100); pinMode(2, OUTPUT); digitalWrite(2, HIGH); (void)digitalRead(2);
    (void)analogRead(34); (void)temperatureRead();
    (void)ESP.getFreeHeap(); (void)ESP.getEfuseMac(); (void)ESP.getChipModel(); (void)ESP.getSdkVersion();
    (void)ESP.getMinFreeHeap(); (void)ESP.getHeapSize(); (void)ESP.getCpuFreqMHz();
    configTime(0, 0, "pool.ntp.org"); configTzTime("UTC0", "pool.ntp.org"); struct tm tm; (void)getLocalTime(&tm, 1);
    Serial.println(&tm, "%H");
    WiFi.onEvent(cb1); WiFi.onEvent(cb3, ARDUINO_EVENT_WIFI_STA_GOT_IP);
    wifi_event_id_t id = WiFi.onEvent([](arduino_event_id_t, arduino_event_info_t) {});
    WiFi.removeEvent(id); WiFi.removeEvent(cb1); WiFi.removeEvent(cb3);
    WiFi.mode(WIFI_STA); WiFi.setHostname("h"); (void)WiFi.getHostname(); WiFi.setAutoReconnect(true);
    (void)WiFi.getAutoReconnect(); WiFi.begin("a", "b"); (void)WiFi.status(); (void)WiFi.isConnected();
    (void)WiFi.localIP().toString(); (void)WiFi.macAddress(); uint8_t mac[6]; WiFi.macAddress(mac);
    (void)WiFi.RSSI(); (void)WiFi.SSID(); (void)WiFi.BSSIDstr(); (void)WiFi.channel(); WiFi.setSleep(false);
    WiFi.reconnect(); WiFi.disconnect(); (void)WiFi.waitForConnectResult(1); (void)WiFi.gatewayIP();
    (void)WiFi.subnetMask(); (void)WiFi.dnsIP(); IPAddress ip; (void)WiFi.hostByName("localhost", ip);
    ip.fromString("1.2.3.4"); (void)(ip == IPAddress(1, 2, 3, 4)); (void)(uint32_t)ip; (void)ip[0];
    WiFiClientSecure net; net.setCACert(""); net.setCertificate(""); net.setPrivateKey(""); net.setInsecure();
    net.setHandshakeTimeout(5); net.setTimeout(5); (void)net.connect("localhost", 1); (void)net.connect(ip, 1);
    (void)net.connect("localhost", 1, 10); char e[64]; (void)net.lastError(e, sizeof e); (void)net.connected();
    (void)net.available(); (void)net.read(); (void)net.peek(); net.flush(); net.stop(); (void)(bool)net;
    WiFiClient plain; (void)plain.connect("localhost", 1);
    PubSubClient a, c(net), d("h", 1, net), f(ip, 1, net);
    c.setServer("h", 1).setServer(ip, 1).setClient(net).setKeepAlive(15).setSocketTimeout(5);
    c.setCallback([](char *, uint8_t *, unsigned int) {});
    (void)c.setBufferSize(512); (void)c.getBufferSize(); (void)c.connect("id"); (void)c.connect("id", "u", "p");
    (void)c.connect("id", "w", 1, true, "m"); (void)c.connect("id", "u", "p", "w", 1, true, "m");
    (void)c.connect("id", nullptr, nullptr, "w", 1, true, "m", true); (void)c.publish("t", "p");
    (void)c.publish("t", "p", true); (void)c.publish("t", (const uint8_t *)"p", 1);
    (void)c.publish("t", (const uint8_t *)"p", 1, true); (void)c.beginPublish("t", 1, false); c.write('x');
    (void)c.endPublish(); (void)c.subscribe("t"); (void)c.subscribe("t", 1); (void)c.unsubscribe("t");
    (void)c.loop(); (void)c.connected(); (void)c.state(); c.disconnect();
    Preferences p; p.begin("ns", true); (void)p.getString("k"); (void)p.getString("k", buf, sizeof buf);
    (void)p.getBytesLength("k"); (void)p.getBytes("k", buf, sizeof buf); (void)p.isKey("k"); (void)p.getUShort("k");
    (void)p.getUInt("k"); (void)p.getInt("k"); (void)p.getBool("k"); (void)p.getULong("k"); (void)p.getLong("k");
    (void)p.getFloat("k"); (void)p.getDouble("k"); (void)p.getUChar("k"); (void)p.getChar("k"); (void)p.getShort("k");
    (void)p.getLong64("k"); (void)p.getULong64("k"); (void)p.putString("k", "v"); (void)p.putBytes("k", buf, 1);
    (void)p.putUShort("k", 1); (void)p.putBool("k", true); (void)p.putInt("k", 1); (void)p.putUInt("k", 1);
    (void)p.putFloat("k", 1); (void)p.remove("k"); (void)p.clear(); (void)p.freeEntries(); (void)p.getType("k"); p.end();
    (void)esp_random(); esp_read_mac(mac, ESP_MAC_WIFI_STA); (void)esp_timer_get_time();
    ESP_LOGI("tag", "x %d", 1);
    xTaskCreate([](void *) { vTaskDelete(NULL); }, "t", 4096, NULL, 1, NULL);
    vTaskDelay(pdMS_TO_TICKS(1)); (void)xTaskGetTickCount();
}
void loop() { ESP.restart(); }
