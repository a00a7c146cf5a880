// MQTT 3.1.1 packet encoding and decoding (OASIS MQTT 3.1.1, section 2 and 3), shared by our
// PubSubClient and esp-mqtt implementations. Written from the specification.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

namespace gen_host {
namespace mqtt {

enum PacketType : uint8_t {
    CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, PUBREC = 5, PUBREL = 6, PUBCOMP = 7,
    SUBSCRIBE = 8, SUBACK = 9, UNSUBSCRIBE = 10, UNSUBACK = 11, PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14,
};

using Bytes = std::vector<uint8_t>;

struct ConnectOptions {
    std::string client_id;
    const char* username = nullptr;   // nullptr: flag not set
    const uint8_t* password = nullptr;
    size_t password_len = 0;
    bool has_password = false;
    const char* will_topic = nullptr; // nullptr: no will
    const uint8_t* will_message = nullptr;
    size_t will_message_len = 0;
    uint8_t will_qos = 0;
    bool will_retain = false;
    bool clean_session = true;
    uint16_t keepalive_s = 15;
    uint8_t protocol_level = 4;       // 3.1.1 ("MQTT"); 3 selects 3.1 ("MQIsdp")
};

// Appends the Remaining Length encoding of len; returns the number of bytes (1..4).
size_t put_remaining_length(Bytes& out, uint32_t len);
void put_u16(Bytes& out, uint16_t v);
void put_string(Bytes& out, const char* s, size_t len);

Bytes connect_packet(const ConnectOptions& o);
// Fixed header + topic (+ packet id when qos > 0); the payload follows separately or via publish_packet.
Bytes publish_header(const char* topic, size_t payload_len, uint8_t qos, bool retain, uint16_t packet_id, bool dup = false);
Bytes publish_packet(const char* topic, const uint8_t* payload, size_t len, uint8_t qos, bool retain, uint16_t packet_id);
Bytes subscribe_packet(uint16_t packet_id, const char* const* topics, const int* qos, size_t count);
Bytes unsubscribe_packet(uint16_t packet_id, const char* topic);
Bytes ack_packet(PacketType type, uint16_t packet_id);  // PUBACK, PUBREC, PUBREL (flags 0x2), PUBCOMP
Bytes simple_packet(PacketType type);                   // PINGREQ, PINGRESP, DISCONNECT

// A parsed inbound PUBLISH (points into the packet body).
struct Publish {
    const char* topic = nullptr;
    size_t topic_len = 0;
    const uint8_t* payload = nullptr;
    size_t payload_len = 0;
    uint8_t qos = 0;
    bool retain = false;
    bool dup = false;
    uint16_t packet_id = 0;
};
bool parse_publish(uint8_t header, const uint8_t* body, size_t len, Publish* out);

// Incremental reader of inbound packets from a byte stream.
class PacketReader {
public:
    // Packets whose Remaining Length exceeds max_body are consumed and reported as dropped.
    explicit PacketReader(size_t max_body) : max_body_(max_body) {}
    // Feeds bytes; returns how many were consumed (stops after a complete packet).
    size_t feed(const uint8_t* data, size_t len);
    bool complete() const { return state_ == DONE; }
    bool dropped() const { return dropped_; }
    uint8_t header() const { return header_; }
    const Bytes& body() const { return body_; }
    void reset();
    bool malformed() const { return state_ == MALFORMED; }

private:
    enum State { HEADER, LENGTH, BODY, DONE, MALFORMED } state_ = HEADER;
    size_t max_body_;
    uint8_t header_ = 0;
    uint32_t remaining_ = 0;
    uint32_t multiplier_ = 1;
    uint32_t got_ = 0;
    bool dropped_ = false;
    Bytes body_;
};

}  // namespace mqtt
}  // namespace gen_host
