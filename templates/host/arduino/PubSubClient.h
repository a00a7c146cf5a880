// PubSubClient.h (PubSubClient 2.8 API and limits) for the host runtime: our own MQTT 3.1.1 client,
// written from the specification. As in 2.8: QoS 0 publishing only; publish() fails when
// 5 + 2 + strlen(topic) + length exceeds the buffer; inbound packets larger than the buffer are read
// and dropped; QoS 1 messages are PUBACKed; loop() sends PINGREQ after keepAlive seconds of silence and
// gives up (-4) when the previous one went unanswered; connect() waits socketTimeout for the CONNACK.
// Approximation: setStream() is accepted, but inbound payloads are not copied to the stream.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <functional>

#include "Arduino.h"
#include "Client.h"
#include "IPAddress.h"
#include "Stream.h"

#define MQTT_VERSION_3_1 3
#define MQTT_VERSION_3_1_1 4
#ifndef MQTT_VERSION
#define MQTT_VERSION MQTT_VERSION_3_1_1
#endif
#ifndef MQTT_MAX_PACKET_SIZE
#define MQTT_MAX_PACKET_SIZE 256
#endif
#ifndef MQTT_KEEPALIVE
#define MQTT_KEEPALIVE 15
#endif
#ifndef MQTT_SOCKET_TIMEOUT
#define MQTT_SOCKET_TIMEOUT 15
#endif

#define MQTT_CONNECTION_TIMEOUT -4
#define MQTT_CONNECTION_LOST -3
#define MQTT_CONNECT_FAILED -2
#define MQTT_DISCONNECTED -1
#define MQTT_CONNECTED 0
#define MQTT_CONNECT_BAD_PROTOCOL 1
#define MQTT_CONNECT_BAD_CLIENT_ID 2
#define MQTT_CONNECT_UNAVAILABLE 3
#define MQTT_CONNECT_BAD_CREDENTIALS 4
#define MQTT_CONNECT_UNAUTHORIZED 5

#define MQTTCONNECT 1 << 4
#define MQTTCONNACK 2 << 4
#define MQTTPUBLISH 3 << 4
#define MQTTPUBACK 4 << 4
#define MQTTPUBREC 5 << 4
#define MQTTPUBREL 6 << 4
#define MQTTPUBCOMP 7 << 4
#define MQTTSUBSCRIBE 8 << 4
#define MQTTSUBACK 9 << 4
#define MQTTUNSUBSCRIBE 10 << 4
#define MQTTUNSUBACK 11 << 4
#define MQTTPINGREQ 12 << 4
#define MQTTPINGRESP 13 << 4
#define MQTTDISCONNECT 14 << 4
#define MQTTReserved 15 << 4

#define MQTTQOS0 (0 << 1)
#define MQTTQOS1 (1 << 1)
#define MQTTQOS2 (2 << 1)

#define MQTT_MAX_HEADER_SIZE 5

#define MQTT_CALLBACK_SIGNATURE std::function<void(char *, uint8_t *, unsigned int)> callback

class PubSubClient : public Print {
public:
    PubSubClient();
    PubSubClient(Client &client);
    PubSubClient(IPAddress addr, uint16_t port, Client &client);
    PubSubClient(IPAddress addr, uint16_t port, Client &client, Stream &stream);
    PubSubClient(IPAddress addr, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client &client);
    PubSubClient(IPAddress addr, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client &client, Stream &stream);
    PubSubClient(uint8_t *ip, uint16_t port, Client &client);
    PubSubClient(uint8_t *ip, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client &client);
    PubSubClient(const char *domain, uint16_t port, Client &client);
    PubSubClient(const char *domain, uint16_t port, Client &client, Stream &stream);
    PubSubClient(const char *domain, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client &client);
    PubSubClient(const char *domain, uint16_t port, MQTT_CALLBACK_SIGNATURE, Client &client, Stream &stream);
    ~PubSubClient() override;

    PubSubClient &setServer(IPAddress ip, uint16_t port);
    PubSubClient &setServer(uint8_t *ip, uint16_t port);
    PubSubClient &setServer(const char *domain, uint16_t port);
    PubSubClient &setCallback(MQTT_CALLBACK_SIGNATURE);
    PubSubClient &setClient(Client &client);
    PubSubClient &setStream(Stream &stream);
    PubSubClient &setKeepAlive(uint16_t keepAlive);
    PubSubClient &setSocketTimeout(uint16_t timeout);

    boolean setBufferSize(uint16_t size);
    uint16_t getBufferSize();

    boolean connect(const char *id);
    boolean connect(const char *id, const char *user, const char *pass);
    boolean connect(const char *id, const char *willTopic, uint8_t willQos, boolean willRetain, const char *willMessage);
    boolean connect(const char *id, const char *user, const char *pass, const char *willTopic, uint8_t willQos,
                    boolean willRetain, const char *willMessage);
    boolean connect(const char *id, const char *user, const char *pass, const char *willTopic, uint8_t willQos,
                    boolean willRetain, const char *willMessage, boolean cleanSession);
    void disconnect();

    boolean publish(const char *topic, const char *payload);
    boolean publish(const char *topic, const char *payload, boolean retained);
    boolean publish(const char *topic, const uint8_t *payload, unsigned int plength);
    boolean publish(const char *topic, const uint8_t *payload, unsigned int plength, boolean retained);
    boolean publish_P(const char *topic, const char *payload, boolean retained);
    boolean publish_P(const char *topic, const uint8_t *payload, unsigned int plength, boolean retained);
    boolean beginPublish(const char *topic, unsigned int plength, boolean retained);
    int endPublish();
    size_t write(uint8_t) override;
    size_t write(const uint8_t *buffer, size_t size) override;
    using Print::write;

    boolean subscribe(const char *topic);
    boolean subscribe(const char *topic, uint8_t qos);
    boolean unsubscribe(const char *topic);
    boolean loop();
    boolean connected();
    int state();

private:
    bool read_byte(uint8_t *result);
    uint32_t read_packet(uint8_t *lengthLength);
    bool send_packet(const uint8_t *data, size_t len);

    Client *_client = nullptr;
    uint8_t *buffer = nullptr;
    uint16_t bufferSize = 0;
    uint16_t keepAlive = MQTT_KEEPALIVE;
    uint16_t socketTimeout = MQTT_SOCKET_TIMEOUT;
    uint16_t nextMsgId = 0;
    unsigned long lastOutActivity = 0;
    unsigned long lastInActivity = 0;
    bool pingOutstanding = false;
    MQTT_CALLBACK_SIGNATURE;
    IPAddress ip;
    const char *domain = nullptr;
    uint16_t port = 0;
    Stream *stream = nullptr;
    int _state = MQTT_DISCONNECTED;
};
