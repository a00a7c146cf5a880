// Host runtime: PubSubClient 2.8-compatible MQTT 3.1.1 client, written from the MQTT specification
// with the 2.8 limits described in PubSubClient.h.
#include "PubSubClient.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mqtt_wire.h"

namespace mqtt = gen_host::mqtt;

PubSubClient::PubSubClient() { setBufferSize(MQTT_MAX_PACKET_SIZE); }
PubSubClient::PubSubClient(Client& client) : PubSubClient() { setClient(client); }
PubSubClient::PubSubClient(IPAddress addr, uint16_t port, Client& client) : PubSubClient(client) { setServer(addr, port); }
PubSubClient::PubSubClient(IPAddress addr, uint16_t port, Client& client, Stream& s) : PubSubClient(addr, port, client) { setStream(s); }
PubSubClient::PubSubClient(IPAddress addr, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client& client) : PubSubClient(addr, port, client) { setCallback(callback); }
PubSubClient::PubSubClient(IPAddress addr, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client& client, Stream& s) : PubSubClient(addr, port, callback, client) { setStream(s); }
PubSubClient::PubSubClient(uint8_t* ip, uint16_t port, Client& client) : PubSubClient(client) { setServer(ip, port); }
PubSubClient::PubSubClient(uint8_t* ip, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client& client) : PubSubClient(ip, port, client) { setCallback(callback); }
PubSubClient::PubSubClient(const char* domain, uint16_t port, Client& client) : PubSubClient(client) { setServer(domain, port); }
PubSubClient::PubSubClient(const char* domain, uint16_t port, Client& client, Stream& s) : PubSubClient(domain, port, client) { setStream(s); }
PubSubClient::PubSubClient(const char* domain, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client& client) : PubSubClient(domain, port, client) { setCallback(callback); }
PubSubClient::PubSubClient(const char* domain, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client& client, Stream& s) : PubSubClient(domain, port, callback, client) { setStream(s); }

PubSubClient::~PubSubClient() {
    free(buffer);
}

PubSubClient& PubSubClient::setServer(IPAddress addr, uint16_t p) {
    ip = addr;
    port = p;
    domain = nullptr;
    return *this;
}
PubSubClient& PubSubClient::setServer(uint8_t* addr, uint16_t p) { return setServer(IPAddress(addr), p); }
PubSubClient& PubSubClient::setServer(const char* d, uint16_t p) {
    domain = d;  // the pointer is kept, not the string (as in 2.8)
    port = p;
    return *this;
}
PubSubClient& PubSubClient::setCallback(MQTT_CALLBACK_SIGNATURE) {
    this->callback = callback;
    return *this;
}
PubSubClient& PubSubClient::setClient(Client& client) {
    _client = &client;
    return *this;
}
PubSubClient& PubSubClient::setStream(Stream& s) {
    stream = &s;
    return *this;
}
PubSubClient& PubSubClient::setKeepAlive(uint16_t k) {
    keepAlive = k;
    return *this;
}
PubSubClient& PubSubClient::setSocketTimeout(uint16_t t) {
    socketTimeout = t;
    return *this;
}

boolean PubSubClient::setBufferSize(uint16_t size) {
    if (size == 0) return false;
    uint8_t* b = static_cast<uint8_t*>(realloc(buffer, size));
    if (!b) return false;
    buffer = b;
    bufferSize = size;
    return true;
}
uint16_t PubSubClient::getBufferSize() { return bufferSize; }

boolean PubSubClient::connect(const char* id) { return connect(id, nullptr, nullptr, nullptr, 0, false, nullptr, true); }
boolean PubSubClient::connect(const char* id, const char* user, const char* pass) {
    return connect(id, user, pass, nullptr, 0, false, nullptr, true);
}
boolean PubSubClient::connect(const char* id, const char* willTopic, uint8_t willQos, boolean willRetain, const char* willMessage) {
    return connect(id, nullptr, nullptr, willTopic, willQos, willRetain, willMessage, true);
}
boolean PubSubClient::connect(const char* id, const char* user, const char* pass, const char* willTopic, uint8_t willQos,
                              boolean willRetain, const char* willMessage) {
    return connect(id, user, pass, willTopic, willQos, willRetain, willMessage, true);
}

boolean PubSubClient::connect(const char* id, const char* user, const char* pass, const char* willTopic, uint8_t willQos,
                              boolean willRetain, const char* willMessage, boolean cleanSession) {
    if (connected()) return false;
    if (!_client) {
        _state = MQTT_CONNECT_FAILED;
        return false;
    }
    int result = 1;
    if (!_client->connected()) {
        result = domain ? _client->connect(domain, port) : _client->connect(ip, port);
    }
    if (result != 1) {
        _state = MQTT_CONNECT_FAILED;
        return false;
    }
    nextMsgId = 1;
    mqtt::ConnectOptions o;
    o.protocol_level = MQTT_VERSION;
    o.client_id = id ? id : "";
    o.clean_session = cleanSession;
    o.keepalive_s = keepAlive;
    if (willTopic) {
        o.will_topic = willTopic;
        o.will_message = reinterpret_cast<const uint8_t*>(willMessage ? willMessage : "");
        o.will_message_len = willMessage ? strlen(willMessage) : 0;
        o.will_qos = willQos;
        o.will_retain = willRetain;
    }
    if (user) {
        o.username = user;
        if (pass) {
            o.has_password = true;
            o.password = reinterpret_cast<const uint8_t*>(pass);
            o.password_len = strlen(pass);
        }
    }
    mqtt::Bytes packet = mqtt::connect_packet(o);
    if (packet.size() > bufferSize) {  // 2.8 builds the packet in its buffer and gives up when it does not fit
        _client->stop();
        return false;
    }
    if (!send_packet(packet.data(), packet.size())) {
        _state = MQTT_CONNECT_FAILED;
        _client->stop();
        return false;
    }
    lastInActivity = lastOutActivity = millis();
    while (!_client->available()) {
        if (millis() - lastInActivity >= static_cast<unsigned long>(socketTimeout) * 1000UL) {
            _state = MQTT_CONNECTION_TIMEOUT;
            _client->stop();
            return false;
        }
        usleep(1000);
    }
    uint8_t llen;
    uint32_t len = read_packet(&llen);
    if (len == 4) {
        if (buffer[3] == 0) {
            lastInActivity = millis();
            pingOutstanding = false;
            _state = MQTT_CONNECTED;
            return true;
        }
        _state = buffer[3];
    }
    _client->stop();
    return false;
}

bool PubSubClient::read_byte(uint8_t* result) {
    unsigned long previous = millis();
    while (!_client->available()) {
        if (millis() - previous >= static_cast<unsigned long>(socketTimeout) * 1000UL) return false;
        if (!_client->connected()) return false;
        usleep(200);
    }
    int c = _client->read();
    if (c < 0) return false;
    *result = static_cast<uint8_t>(c);
    return true;
}

// Reads one packet into buffer; returns its total length, or 0 if it timed out or did not fit.
uint32_t PubSubClient::read_packet(uint8_t* lengthLength) {
    uint16_t len = 0;
    uint8_t byte;
    if (!read_byte(&byte)) return 0;
    buffer[len++] = byte;
    uint32_t multiplier = 1;
    uint32_t length = 0;
    do {
        if (len == 5) {  // a Remaining Length longer than 4 bytes is malformed
            _state = MQTT_DISCONNECTED;
            _client->stop();
            return 0;
        }
        if (!read_byte(&byte)) return 0;
        buffer[len++] = byte;
        length += (byte & 127) * multiplier;
        multiplier <<= 7;
    } while (byte & 128);
    *lengthLength = static_cast<uint8_t>(len - 1);
    uint32_t total = len + length;
    for (uint32_t i = 0; i < length; i++) {
        if (!read_byte(&byte)) return 0;
        if (len < bufferSize) buffer[len] = byte;
        len = len < 0xFFFF ? static_cast<uint16_t>(len + 1) : len;
    }
    if (total > bufferSize) return 0;  // too big for the buffer: read and dropped
    return total;
}

bool PubSubClient::send_packet(const uint8_t* data, size_t len) {
    size_t written = _client->write(data, len);
    lastOutActivity = millis();
    return written == len;
}

boolean PubSubClient::loop() {
    if (!connected()) return false;
    unsigned long t = millis();
    unsigned long ka = static_cast<unsigned long>(keepAlive) * 1000UL;
    if (keepAlive && ((t - lastInActivity > ka) || (t - lastOutActivity > ka))) {
        if (pingOutstanding) {
            _state = MQTT_CONNECTION_TIMEOUT;
            _client->stop();
            return false;
        }
        mqtt::Bytes ping = mqtt::simple_packet(mqtt::PINGREQ);
        send_packet(ping.data(), ping.size());
        lastOutActivity = t;
        lastInActivity = t;
        pingOutstanding = true;
    }
    if (_client->available()) {
        uint8_t llen;
        uint32_t len = read_packet(&llen);
        if (len > 0) {
            lastInActivity = t;
            uint8_t type = buffer[0] & 0xF0;
            if (type == MQTTPUBLISH) {
                if (callback) {
                    uint16_t tl = static_cast<uint16_t>((buffer[llen + 1] << 8) + buffer[llen + 2]);
                    // Shift the topic one byte left to NUL-terminate it in place.
                    memmove(buffer + llen + 2, buffer + llen + 3, tl);
                    buffer[llen + 2 + tl] = 0;
                    char* topic = reinterpret_cast<char*>(buffer + llen + 2);
                    if ((buffer[0] & 0x06) == MQTTQOS1) {
                        uint16_t msgId = static_cast<uint16_t>((buffer[llen + 3 + tl] << 8) + buffer[llen + 3 + tl + 1]);
                        uint8_t* payload = buffer + llen + 3 + tl + 2;
                        callback(topic, payload, len - llen - 3 - tl - 2);
                        mqtt::Bytes ack = mqtt::ack_packet(mqtt::PUBACK, msgId);
                        send_packet(ack.data(), ack.size());
                    } else {
                        uint8_t* payload = buffer + llen + 3 + tl;
                        callback(topic, payload, len - llen - 3 - tl);
                    }
                }
            } else if (type == MQTTPINGREQ) {
                mqtt::Bytes resp = mqtt::simple_packet(mqtt::PINGRESP);
                send_packet(resp.data(), resp.size());
            } else if (type == MQTTPINGRESP) {
                pingOutstanding = false;
            }
        } else if (!connected()) {
            return false;
        }
    }
    return true;
}

boolean PubSubClient::publish(const char* topic, const char* payload) {
    return publish(topic, reinterpret_cast<const uint8_t*>(payload), payload ? strlen(payload) : 0, false);
}
boolean PubSubClient::publish(const char* topic, const char* payload, boolean retained) {
    return publish(topic, reinterpret_cast<const uint8_t*>(payload), payload ? strlen(payload) : 0, retained);
}
boolean PubSubClient::publish(const char* topic, const uint8_t* payload, unsigned int plength) {
    return publish(topic, payload, plength, false);
}
boolean PubSubClient::publish(const char* topic, const uint8_t* payload, unsigned int plength, boolean retained) {
    if (!connected() || !topic) return false;
    if (bufferSize < MQTT_MAX_HEADER_SIZE + 2 + strlen(topic) + plength) return false;
    mqtt::Bytes packet = mqtt::publish_packet(topic, payload, plength, 0, retained, 0);
    return send_packet(packet.data(), packet.size());
}
boolean PubSubClient::publish_P(const char* topic, const char* payload, boolean retained) {
    return publish(topic, payload, retained);
}
boolean PubSubClient::publish_P(const char* topic, const uint8_t* payload, unsigned int plength, boolean retained) {
    return publish(topic, payload, plength, retained);
}

boolean PubSubClient::beginPublish(const char* topic, unsigned int plength, boolean retained) {
    if (!connected() || !topic) return false;
    mqtt::Bytes header = mqtt::publish_header(topic, plength, 0, retained, 0);
    if (!send_packet(header.data(), header.size())) return false;
    return true;
}

int PubSubClient::endPublish() {
    if (!connected()) return 0;
    return 1;
}

size_t PubSubClient::write(uint8_t data) {
    lastOutActivity = millis();
    return _client ? _client->write(data) : 0;
}

size_t PubSubClient::write(const uint8_t* buf, size_t size) {
    lastOutActivity = millis();
    return _client ? _client->write(buf, size) : 0;
}

boolean PubSubClient::subscribe(const char* topic) { return subscribe(topic, 0); }

boolean PubSubClient::subscribe(const char* topic, uint8_t qos) {
    if (!topic || qos > 1) return false;
    size_t topicLength = strlen(topic);
    if (bufferSize < 9 + topicLength) return false;
    if (!connected()) return false;
    if (++nextMsgId == 0) nextMsgId = 1;
    const char* topics[] = {topic};
    int qoss[] = {qos};
    mqtt::Bytes packet = mqtt::subscribe_packet(nextMsgId, topics, qoss, 1);
    return send_packet(packet.data(), packet.size());
}

boolean PubSubClient::unsubscribe(const char* topic) {
    if (!topic) return false;
    size_t topicLength = strlen(topic);
    if (bufferSize < 9 + topicLength) return false;
    if (!connected()) return false;
    if (++nextMsgId == 0) nextMsgId = 1;
    mqtt::Bytes packet = mqtt::unsubscribe_packet(nextMsgId, topic);
    return send_packet(packet.data(), packet.size());
}

void PubSubClient::disconnect() {
    if (_client) {
        mqtt::Bytes packet = mqtt::simple_packet(mqtt::DISCONNECT);
        _client->write(packet.data(), packet.size());
        _client->flush();
        _client->stop();
    }
    _state = MQTT_DISCONNECTED;
    lastInActivity = lastOutActivity = millis();
}

boolean PubSubClient::connected() {
    if (!_client) return false;
    bool rc = _client->connected();
    if (!rc) {
        if (_state == MQTT_CONNECTED) {
            _state = MQTT_CONNECTION_LOST;
            _client->flush();
            _client->stop();
        }
    } else {
        return _state == MQTT_CONNECTED;
    }
    return rc;
}

int PubSubClient::state() { return _state; }
