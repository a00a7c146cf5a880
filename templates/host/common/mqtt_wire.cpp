#include "mqtt_wire.h"

#include <string.h>

namespace gen_host {
namespace mqtt {

size_t put_remaining_length(Bytes& out, uint32_t len) {
    size_t n = 0;
    do {
        uint8_t digit = len % 128;
        len /= 128;
        if (len > 0) digit |= 0x80;
        out.push_back(digit);
        n++;
    } while (len > 0 && n < 4);
    return n;
}

void put_u16(Bytes& out, uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v & 0xFF));
}

void put_string(Bytes& out, const char* s, size_t len) {
    put_u16(out, static_cast<uint16_t>(len));
    out.insert(out.end(), s, s + len);
}

namespace {
Bytes with_fixed_header(uint8_t first, const Bytes& body) {
    Bytes out;
    out.reserve(body.size() + 5);
    out.push_back(first);
    put_remaining_length(out, static_cast<uint32_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}
}  // namespace

Bytes connect_packet(const ConnectOptions& o) {
    Bytes body;
    if (o.protocol_level == 3) {
        put_string(body, "MQIsdp", 6);
    } else {
        put_string(body, "MQTT", 4);
    }
    body.push_back(o.protocol_level);
    uint8_t flags = 0;
    if (o.clean_session) flags |= 0x02;
    if (o.will_topic) {
        flags |= 0x04;
        flags |= static_cast<uint8_t>((o.will_qos & 0x3) << 3);
        if (o.will_retain) flags |= 0x20;
    }
    if (o.username) {
        flags |= 0x80;
        if (o.has_password) flags |= 0x40;
    }
    body.push_back(flags);
    put_u16(body, o.keepalive_s);
    put_string(body, o.client_id.data(), o.client_id.size());
    if (o.will_topic) {
        put_string(body, o.will_topic, strlen(o.will_topic));
        put_u16(body, static_cast<uint16_t>(o.will_message_len));
        if (o.will_message_len) body.insert(body.end(), o.will_message, o.will_message + o.will_message_len);
    }
    if (o.username) {
        put_string(body, o.username, strlen(o.username));
        if (o.has_password) {
            put_u16(body, static_cast<uint16_t>(o.password_len));
            body.insert(body.end(), o.password, o.password + o.password_len);
        }
    }
    return with_fixed_header(CONNECT << 4, body);
}

Bytes publish_header(const char* topic, size_t payload_len, uint8_t qos, bool retain, uint16_t packet_id, bool dup) {
    size_t topic_len = strlen(topic);
    uint8_t first = static_cast<uint8_t>((PUBLISH << 4) | ((qos & 0x3) << 1) | (retain ? 1 : 0) | (dup ? 0x08 : 0));
    Bytes out;
    out.push_back(first);
    put_remaining_length(out, static_cast<uint32_t>(2 + topic_len + (qos ? 2 : 0) + payload_len));
    put_string(out, topic, topic_len);
    if (qos) put_u16(out, packet_id);
    return out;
}

Bytes publish_packet(const char* topic, const uint8_t* payload, size_t len, uint8_t qos, bool retain, uint16_t packet_id) {
    Bytes out = publish_header(topic, len, qos, retain, packet_id);
    if (len) out.insert(out.end(), payload, payload + len);
    return out;
}

Bytes subscribe_packet(uint16_t packet_id, const char* const* topics, const int* qos, size_t count) {
    Bytes body;
    put_u16(body, packet_id);
    for (size_t i = 0; i < count; i++) {
        put_string(body, topics[i], strlen(topics[i]));
        body.push_back(static_cast<uint8_t>(qos[i] & 0x3));
    }
    return with_fixed_header((SUBSCRIBE << 4) | 0x02, body);
}

Bytes unsubscribe_packet(uint16_t packet_id, const char* topic) {
    Bytes body;
    put_u16(body, packet_id);
    put_string(body, topic, strlen(topic));
    return with_fixed_header((UNSUBSCRIBE << 4) | 0x02, body);
}

Bytes ack_packet(PacketType type, uint16_t packet_id) {
    Bytes out;
    out.push_back(static_cast<uint8_t>((type << 4) | (type == PUBREL ? 0x02 : 0)));
    out.push_back(2);
    put_u16(out, packet_id);
    return out;
}

Bytes simple_packet(PacketType type) { return Bytes{static_cast<uint8_t>(type << 4), 0}; }

bool parse_publish(uint8_t header, const uint8_t* body, size_t len, Publish* out) {
    if (len < 2) return false;
    size_t topic_len = (static_cast<size_t>(body[0]) << 8) | body[1];
    size_t pos = 2 + topic_len;
    out->qos = (header >> 1) & 0x3;
    out->retain = header & 0x1;
    out->dup = header & 0x8;
    if (out->qos) pos += 2;
    if (pos > len) return false;
    out->topic = reinterpret_cast<const char*>(body + 2);
    out->topic_len = topic_len;
    out->packet_id = out->qos ? static_cast<uint16_t>((body[2 + topic_len] << 8) | body[3 + topic_len]) : 0;
    out->payload = body + pos;
    out->payload_len = len - pos;
    return true;
}

void PacketReader::reset() {
    state_ = HEADER;
    header_ = 0;
    remaining_ = 0;
    multiplier_ = 1;
    got_ = 0;
    dropped_ = false;
    body_.clear();
}

size_t PacketReader::feed(const uint8_t* data, size_t len) {
    size_t used = 0;
    while (used < len && state_ != DONE && state_ != MALFORMED) {
        uint8_t b = data[used];
        switch (state_) {
            case HEADER:
                header_ = b;
                state_ = LENGTH;
                used++;
                break;
            case LENGTH:
                remaining_ += (b & 0x7F) * multiplier_;
                multiplier_ *= 128;
                used++;
                if (!(b & 0x80)) {
                    dropped_ = remaining_ > max_body_;
                    if (!dropped_) body_.reserve(remaining_);
                    state_ = remaining_ == 0 ? DONE : BODY;
                } else if (multiplier_ > 128 * 128 * 128) {
                    state_ = MALFORMED;
                }
                break;
            case BODY: {
                size_t take = len - used;
                if (take > remaining_ - got_) take = remaining_ - got_;
                if (!dropped_) body_.insert(body_.end(), data + used, data + used + take);
                got_ += static_cast<uint32_t>(take);
                used += take;
                if (got_ == remaining_) state_ = DONE;
                break;
            }
            default:
                break;
        }
    }
    return used;
}

}  // namespace mqtt
}  // namespace gen_host
