// Host runtime: esp-mqtt (IDF 5.x API) over our MQTT 3.1.1 wire code and mbedTLS transport.
// Like esp-mqtt: one task per client; handlers run on it with the client lock (recursive) held;
// automatic reconnect every reconnect_timeout_ms; ERROR then DISCONNECTED on a failed connection.
#include <errno.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "esp_log.h"
#include "esp_mac.h"
#include "esp_timer.h"
#include "mqtt_client.h"
#include "mqtt_wire.h"
#include "tls_session.h"

ESP_EVENT_DEFINE_BASE(MQTT_EVENTS);

namespace mqtt = gen_host::mqtt;
using gen_host::Transport;
using gen_host::TransportError;

namespace {

const char* TAG = "mqtt_client";
const int DEFAULT_RECONNECT_MS = 10000;
const int DEFAULT_NETWORK_TIMEOUT_MS = 10000;
const int DEFAULT_KEEPALIVE_S = 120;
const int DEFAULT_BUFFER_SIZE = 1024;
const size_t MAX_INBOUND_PACKET = 16u * 1024u * 1024u;

int64_t now_ms() { return esp_timer_get_time() / 1000; }  // platform_tick_get_ms()

struct EventHandler {
    esp_mqtt_event_id_t id;
    esp_event_handler_t fn;
    void* arg;
};

struct Unacked {
    std::string topic;
    std::string data;
    int qos;
    bool retain;
    bool released;  // QoS 2: PUBREC received, PUBREL sent
};

esp_err_t esp_err_for(const TransportError& e) {
    switch (e.stage) {
        case TransportError::RESOLVE: return ESP_ERR_ESP_TLS_CANNOT_RESOLVE_HOSTNAME;
        case TransportError::CONNECT:
            return e.sock_errno == ETIMEDOUT ? ESP_ERR_ESP_TLS_CONNECTION_TIMEOUT : ESP_ERR_ESP_TLS_FAILED_CONNECT_TO_HOST;
        case TransportError::TLS_SETUP: return ESP_ERR_MBEDTLS_SSL_SETUP_FAILED;
        case TransportError::CERT_PARSE: return ESP_ERR_MBEDTLS_X509_CRT_PARSE_FAILED;
        case TransportError::KEY_PARSE: return ESP_ERR_MBEDTLS_PK_PARSE_KEY_FAILED;
        case TransportError::HANDSHAKE: return ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED;
        case TransportError::HANDSHAKE_TIMEOUT: return ESP_ERR_ESP_TLS_CONNECTION_TIMEOUT;
        case TransportError::IO: return e.mbedtls_error ? ESP_ERR_MBEDTLS_SSL_READ_FAILED : ESP_ERR_ESP_TLS_TCP_CLOSED_FIN;
        default: return ESP_OK;
    }
}

const char* refusal_text(int rc) {
    switch (rc) {
        case 1: return "Connection refused, unacceptable protocol version";
        case 2: return "Connection refused, identifier rejected";
        case 3: return "Connection refused, Server unavailable";
        case 4: return "Connection refused, bad username or password";
        case 5: return "Connection refused, not authorized";
        default: return "Connection refused, Unknown reason";
    }
}

}  // namespace

struct esp_mqtt_client {
    // configuration
    std::string host;
    uint16_t port = 0;
    bool tls = true;
    std::string ca, cert, key, key_password;  // stored with their NUL
    size_t ca_len = 0, cert_len = 0, key_len = 0;
    bool has_ca = false, has_cert = false, has_key = false, bundle = false;
    std::string common_name;
    bool has_common_name = false, skip_cn_check = false;
    std::string client_id, username, password;
    bool has_username = false, has_password = false;
    std::string will_topic, will_msg;
    int will_qos = 0;
    bool will_retain = false, has_will = false;
    bool clean_session = true;
    int keepalive_s = DEFAULT_KEEPALIVE_S;
    bool disable_keepalive = false;
    int reconnect_ms = DEFAULT_RECONNECT_MS;
    int timeout_ms = DEFAULT_NETWORK_TIMEOUT_MS;
    bool auto_reconnect = true;
    int buffer_size = DEFAULT_BUFFER_SIZE;

    // state
    enum State { STOPPED, INIT, CONNECTED, WAIT_RECONNECT } state = STOPPED;
    std::recursive_mutex lock;
    Transport transport;
    mqtt::PacketReader reader{MAX_INBOUND_PACKET};
    std::thread task;
    std::thread::id task_id;
    std::atomic<bool> run{false};
    std::mutex wake_mutex;
    std::condition_variable wake;
    std::vector<EventHandler> handlers;
    uint16_t last_msg_id = 0;
    int64_t last_ping_ms = 0;
    bool waiting_ping = false;
    int64_t reconnect_at = 0;
    std::map<uint16_t, Unacked> outbox;
    std::deque<std::pair<uint16_t, Unacked>> queued;  // enqueued, not yet sent
    esp_mqtt_error_codes_t error{};
    esp_mqtt_event_t event{};

    uint16_t next_msg_id() {
        if (++last_msg_id == 0) last_msg_id = 1;
        return last_msg_id;
    }

    void dispatch(esp_mqtt_event_id_t id) {
        event.event_id = id;
        event.client = this;
        event.error_handle = &error;
        event.protocol_ver = MQTT_PROTOCOL_V_3_1_1;
        std::vector<EventHandler> snapshot = handlers;
        for (auto& h : snapshot) {
            if (h.id == MQTT_EVENT_ANY || h.id == id) h.fn(h.arg, MQTT_EVENTS, id, &event);
        }
    }

    void reset_event() {
        event = esp_mqtt_event_t();
    }

    bool send(const mqtt::Bytes& packet) {
        return transport.write(packet.data(), packet.size(), timeout_ms) == static_cast<int>(packet.size());
    }

    // esp_mqtt_abort_connection: close, schedule the reconnect, tell the application.
    void abort_connection() {
        transport.close();
        state = WAIT_RECONNECT;
        reconnect_at = now_ms() + reconnect_ms;
        reset_event();
        dispatch(MQTT_EVENT_DISCONNECTED);
    }

    void transport_error(const TransportError& e) {
        error = esp_mqtt_error_codes_t();
        error.error_type = MQTT_ERROR_TYPE_TCP_TRANSPORT;
        error.esp_tls_last_esp_err = esp_err_for(e);
        error.esp_tls_stack_err = e.mbedtls_error;
        error.esp_tls_cert_verify_flags = static_cast<int>(e.verify_flags);
        error.esp_transport_sock_errno = e.sock_errno;
        reset_event();
        dispatch(MQTT_EVENT_ERROR);
    }

    void log_connect_failure(const TransportError& e) {
        if (e.stage == TransportError::HANDSHAKE) {
            ESP_LOGE("esp-tls-mbedtls", "mbedtls_ssl_handshake returned -0x%04X", static_cast<unsigned>(-e.mbedtls_error));
            if (e.verify_flags) ESP_LOGE("esp-tls-mbedtls", "Failed to verify peer certificate!");
            ESP_LOGI("esp-tls-mbedtls", "%s", e.text().c_str());
        } else if (e.stage == TransportError::CONNECT || e.stage == TransportError::RESOLVE) {
            ESP_LOGE("esp-tls", "[sock=54] %s", e.text().c_str());
        } else {
            ESP_LOGE("esp-tls-mbedtls", "%s", e.text().c_str());
        }
        ESP_LOGE("esp-tls", "Failed to open new connection");
        ESP_LOGE("transport_base", "Failed to open a new connection");
        ESP_LOGE(TAG, "Error transport connect");
    }

    void connect_once() {
        reset_event();
        dispatch(MQTT_EVENT_BEFORE_CONNECT);
        gen_host::TlsOptions o;
        o.use_tls = tls;
        if (tls) {
            if (bundle) ESP_LOGE(TAG, "crt_bundle_attach is not available in the host runtime; set broker.verification.certificate");
            if (has_ca) { o.ca = ca.data(); o.ca_len = ca_len; }
            if (has_cert && has_key) {
                o.cert = cert.data(); o.cert_len = cert_len;
                o.key = key.data(); o.key_len = key_len;
                if (!key_password.empty()) {
                    o.key_password = key_password.data();
                    o.key_password_len = key_password.size();
                }
            }
            o.verify_name = skip_cn_check ? nullptr : (has_common_name ? common_name.c_str() : host.c_str());
        }
        o.connect_timeout_ms = timeout_ms;
        o.handshake_timeout_ms = timeout_ms;
        TransportError e;
        if (!transport.open(host.c_str(), port, o, &e)) {
            log_connect_failure(e);
            transport_error(e);
            abort_connection();
            return;
        }
        mqtt::ConnectOptions c;
        c.client_id = client_id;
        c.clean_session = clean_session;
        c.keepalive_s = static_cast<uint16_t>(disable_keepalive ? 0 : keepalive_s);
        if (has_username) c.username = username.c_str();
        if (has_password) {
            c.has_password = true;
            c.password = reinterpret_cast<const uint8_t*>(password.data());
            c.password_len = password.size();
            if (!has_username) c.username = "";
        }
        if (has_will) {
            c.will_topic = will_topic.c_str();
            c.will_message = reinterpret_cast<const uint8_t*>(will_msg.data());
            c.will_message_len = will_msg.size();
            c.will_qos = static_cast<uint8_t>(will_qos);
            c.will_retain = will_retain;
        }
        if (!send(mqtt::connect_packet(c))) {
            ESP_LOGE(TAG, "Writing failed: errno=%d", transport.last_error().sock_errno);
            transport_error(transport.last_error());
            abort_connection();
            return;
        }
        // Wait for CONNACK.
        reader.reset();
        int64_t deadline = now_ms() + timeout_ms;
        uint8_t buf[512];
        while (!reader.complete()) {
            int64_t left = deadline - now_ms();
            int n = left > 0 ? transport.read(buf, 1, static_cast<int>(left)) : 0;
            if (n < 0) {
                ESP_LOGE(TAG, "mqtt_message_receive: transport_read() error: errno=%d", transport.last_error().sock_errno);
                transport_error(transport.last_error());
                abort_connection();
                return;
            }
            if (n == 0) {
                ESP_LOGE(TAG, "Connect timeout");
                TransportError t;
                t.stage = TransportError::IO;
                transport_error(t);
                abort_connection();
                return;
            }
            reader.feed(buf, 1);
        }
        uint8_t type = reader.header() >> 4;
        const mqtt::Bytes& body = reader.body();
        if (type != mqtt::CONNACK || body.size() < 2) {
            ESP_LOGE(TAG, "Invalid MSG_TYPE response: %d", type);
            TransportError t;
            t.stage = TransportError::IO;
            transport_error(t);
            abort_connection();
            return;
        }
        int rc = body[1];
        if (rc != 0) {
            ESP_LOGW(TAG, "%s", refusal_text(rc));
            error = esp_mqtt_error_codes_t();
            error.error_type = MQTT_ERROR_TYPE_CONNECTION_REFUSED;
            error.connect_return_code = static_cast<esp_mqtt_connect_return_code_t>(rc);
            reset_event();
            dispatch(MQTT_EVENT_ERROR);
            abort_connection();
            return;
        }
        reader.reset();
        state = CONNECTED;
        last_ping_ms = now_ms();
        waiting_ping = false;
        error = esp_mqtt_error_codes_t();
        std::map<uint16_t, Unacked> unacked = outbox;  // from before this connection
        reset_event();
        event.session_present = body[0] & 0x1;
        dispatch(MQTT_EVENT_CONNECTED);
        if (state != CONNECTED) return;
        // The outbox: unacknowledged QoS>0 messages again (DUP), then what was enqueued meanwhile.
        for (auto& item : unacked) {
            mqtt::Bytes p = mqtt::publish_header(item.second.topic.c_str(), item.second.data.size(),
                                                 static_cast<uint8_t>(item.second.qos), item.second.retain, item.first, true);
            p.insert(p.end(), item.second.data.begin(), item.second.data.end());
            if (item.second.released) p = mqtt::ack_packet(mqtt::PUBREL, item.first);
            if (!send(p)) break;
        }
        flush_queued();
    }

    void flush_queued() {
        while (state == CONNECTED && !queued.empty()) {
            auto item = queued.front();
            queued.pop_front();
            if (!publish_now(item.first, item.second)) break;
        }
    }

    bool publish_now(uint16_t msg_id, const Unacked& m) {
        mqtt::Bytes p = mqtt::publish_header(m.topic.c_str(), m.data.size(), static_cast<uint8_t>(m.qos), m.retain, msg_id);
        p.insert(p.end(), m.data.begin(), m.data.end());
        if (m.qos > 0) outbox[msg_id] = m;
        if (!send(p)) {
            ESP_LOGE(TAG, "Error to public data to topic=%s, qos=%d", m.topic.c_str(), m.qos);
            transport_error(transport.last_error());
            abort_connection();
            return false;
        }
        return true;
    }

    void deliver_publish(const mqtt::Publish& pub) {
        size_t chunk = static_cast<size_t>(buffer_size > 0 ? buffer_size : DEFAULT_BUFFER_SIZE);
        size_t offset = 0;
        do {
            size_t len = pub.payload_len - offset;
            if (len > chunk) len = chunk;
            reset_event();
            event.msg_id = pub.packet_id;
            event.qos = pub.qos;
            event.retain = pub.retain;
            event.dup = pub.dup;
            event.total_data_len = static_cast<int>(pub.payload_len);
            event.current_data_offset = static_cast<int>(offset);
            event.data = const_cast<char*>(reinterpret_cast<const char*>(pub.payload + offset));
            event.data_len = static_cast<int>(len);
            if (offset == 0) {
                event.topic = const_cast<char*>(pub.topic);
                event.topic_len = static_cast<int>(pub.topic_len);
            }
            dispatch(MQTT_EVENT_DATA);
            offset += len;
        } while (offset < pub.payload_len);
    }

    // Handles one complete inbound packet; false if the connection was aborted.
    bool handle_packet() {
        uint8_t header = reader.header();
        mqtt::Bytes body = reader.body();
        reader.reset();
        uint8_t type = header >> 4;
        uint16_t id = body.size() >= 2 ? static_cast<uint16_t>((body[0] << 8) | body[1]) : 0;
        switch (type) {
            case mqtt::PUBLISH: {
                mqtt::Publish pub;
                if (!mqtt::parse_publish(header, body.data(), body.size(), &pub)) break;
                if (pub.qos == 1 && !send(mqtt::ack_packet(mqtt::PUBACK, pub.packet_id))) return io_failed();
                if (pub.qos == 2 && !send(mqtt::ack_packet(mqtt::PUBREC, pub.packet_id))) return io_failed();
                deliver_publish(pub);
                break;
            }
            case mqtt::PUBREL:
                if (!send(mqtt::ack_packet(mqtt::PUBCOMP, id))) return io_failed();
                break;
            case mqtt::PUBACK:
            case mqtt::PUBCOMP:
                outbox.erase(id);
                reset_event();
                event.msg_id = id;
                dispatch(MQTT_EVENT_PUBLISHED);
                break;
            case mqtt::PUBREC: {
                auto it = outbox.find(id);
                if (it != outbox.end()) it->second.released = true;
                if (!send(mqtt::ack_packet(mqtt::PUBREL, id))) return io_failed();
                break;
            }
            case mqtt::SUBACK: {
                reset_event();
                event.msg_id = id;
                std::string codes(body.begin() + (body.size() >= 2 ? 2 : 0), body.end());
                for (char c : codes) {
                    if (static_cast<uint8_t>(c) == 0x80) {
                        error = esp_mqtt_error_codes_t();
                        error.error_type = MQTT_ERROR_TYPE_SUBSCRIBE_FAILED;
                    }
                }
                event.data = const_cast<char*>(codes.data());
                event.data_len = static_cast<int>(codes.size());
                dispatch(MQTT_EVENT_SUBSCRIBED);
                break;
            }
            case mqtt::UNSUBACK:
                reset_event();
                event.msg_id = id;
                dispatch(MQTT_EVENT_UNSUBSCRIBED);
                break;
            case mqtt::PINGRESP:
                waiting_ping = false;
                break;
            default:
                break;
        }
        return state == CONNECTED;
    }

    bool io_failed() {
        ESP_LOGE(TAG, "esp_mqtt_handle_transport_read_error: transport_read() error: errno=%d",
                 transport.last_error().sock_errno);
        transport_error(transport.last_error());
        abort_connection();
        return false;
    }

    void service_connection() {
        uint8_t buf[4096];
        for (;;) {
            int avail = transport.available();
            if (avail < 0) {
                io_failed();
                return;
            }
            if (avail == 0) break;
            int n = transport.read(buf, sizeof buf, 0);
            if (n < 0) {
                io_failed();
                return;
            }
            size_t used = 0;
            while (used < static_cast<size_t>(n)) {
                used += reader.feed(buf + used, static_cast<size_t>(n) - used);
                if (reader.malformed()) {
                    TransportError t;
                    t.stage = TransportError::IO;
                    transport_error(t);
                    abort_connection();
                    return;
                }
                if (reader.complete() && !handle_packet()) return;
            }
        }
        if (!disable_keepalive && keepalive_s > 0 && now_ms() - last_ping_ms >= keepalive_s * 1000 / 2) {
            if (waiting_ping) {
                ESP_LOGE(TAG, "No PING_RESP, disconnected");
                abort_connection();
                return;
            }
            if (!send(mqtt::simple_packet(mqtt::PINGREQ))) {
                io_failed();
                return;
            }
            waiting_ping = true;
            last_ping_ms = now_ms();
        }
        flush_queued();
    }

    void task_main() {
        task_id = std::this_thread::get_id();
        while (run.load()) {
            int wait_ms = 100;
            {
                std::lock_guard<std::recursive_mutex> guard(lock);
                if (!run.load()) break;
                switch (state) {
                    case INIT:
                        connect_once();
                        break;
                    case CONNECTED:
                        service_connection();
                        break;
                    case WAIT_RECONNECT:
                        if (auto_reconnect && now_ms() >= reconnect_at) {
                            state = INIT;
                            wait_ms = 0;
                        }
                        break;
                    case STOPPED:
                        break;
                }
            }
            if (wait_ms == 0) continue;
            if (state == CONNECTED) {
                transport.wait_readable(wait_ms);
            } else {
                std::unique_lock<std::mutex> l(wake_mutex);
                wake.wait_for(l, std::chrono::milliseconds(wait_ms));
            }
        }
    }
};

namespace {

bool parse_uri(esp_mqtt_client* c, const char* uri) {
    std::string u(uri);
    size_t scheme_end = u.find("://");
    if (scheme_end == std::string::npos) return false;
    std::string scheme = u.substr(0, scheme_end);
    if (scheme == "mqtt" || scheme == "tcp") c->tls = false;
    else if (scheme == "mqtts" || scheme == "ssl") c->tls = true;
    else {
        ESP_LOGE(TAG, "The host runtime supports mqtt:// and mqtts:// only, not %s://", scheme.c_str());
        return false;
    }
    std::string rest = u.substr(scheme_end + 3);
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    size_t at = authority.rfind('@');
    if (at != std::string::npos) {
        std::string userinfo = authority.substr(0, at);
        authority = authority.substr(at + 1);
        size_t colon = userinfo.find(':');
        c->username = userinfo.substr(0, colon);
        c->has_username = true;
        if (colon != std::string::npos) {
            c->password = userinfo.substr(colon + 1);
            c->has_password = true;
        }
    }
    size_t colon = authority.rfind(':');
    if (colon != std::string::npos) {
        c->host = authority.substr(0, colon);
        c->port = static_cast<uint16_t>(atoi(authority.c_str() + colon + 1));
    } else {
        c->host = authority;
        if (!c->port) c->port = c->tls ? 8883 : 1883;
    }
    return !c->host.empty();
}

void copy_pem_or_der(const char* data, size_t len, std::string* out, size_t* out_len, bool* has) {
    if (!data) return;
    *has = true;
    if (len == 0) {  // PEM: esp-tls parses strlen + 1 bytes
        *out = std::string(data, strlen(data) + 1);
        *out_len = out->size();
    } else {
        *out = std::string(data, len);
        *out_len = len;
    }
}

bool apply_config(esp_mqtt_client* c, const esp_mqtt_client_config_t* cfg) {
    const auto& a = cfg->broker.address;
    const auto& v = cfg->broker.verification;
    bool ssl_options = v.certificate || v.psk_hint_key || v.alpn_protos || cfg->credentials.authentication.certificate;
    if (a.uri && a.transport != MQTT_TRANSPORT_UNKNOWN) {
        ESP_LOGE(TAG, "Inconsistent config: Transport and URI both set");
        return false;
    }
    if (a.port) c->port = static_cast<uint16_t>(a.port);
    if (a.hostname) c->host = a.hostname;
    if (a.transport == MQTT_TRANSPORT_OVER_TCP) c->tls = false;
    else if (a.transport == MQTT_TRANSPORT_OVER_SSL) c->tls = true;
    else if (a.transport != MQTT_TRANSPORT_UNKNOWN) {
        ESP_LOGE(TAG, "The host runtime supports TCP and SSL transports only");
        return false;
    }
    if (a.uri && !parse_uri(c, a.uri)) {
        ESP_LOGE(TAG, "Error parse uri = %s", a.uri);
        return false;
    }
    if (!a.uri && !a.hostname) {
        ESP_LOGE(TAG, "No broker: set broker.address.uri or hostname");
        return false;
    }
    if (!c->port) c->port = c->tls ? 8883 : 1883;
    if (ssl_options && !c->tls) {
        ESP_LOGE(TAG, "Inconsistent config: SSL options set with a plain TCP transport");
        return false;
    }
    copy_pem_or_der(v.certificate, v.certificate_len, &c->ca, &c->ca_len, &c->has_ca);
    c->bundle = v.crt_bundle_attach != nullptr;
    if (v.common_name) {
        c->common_name = v.common_name;
        c->has_common_name = true;
    }
    c->skip_cn_check = v.skip_cert_common_name_check;
    const auto& cred = cfg->credentials;
    if (cred.client_id) c->client_id = cred.client_id;
    else if (!cred.set_null_client_id) {
        uint8_t mac[6];
        esp_read_mac(mac, ESP_MAC_WIFI_STA);  // platform_create_id_string()
        char id[32];
        snprintf(id, sizeof id, "ESP32_%02x%02X%02X", mac[3], mac[4], mac[5]);
        c->client_id = id;
    }
    if (cred.username) {
        c->username = cred.username;
        c->has_username = true;
    }
    if (cred.authentication.password) {
        c->password = cred.authentication.password;
        c->has_password = true;
    }
    copy_pem_or_der(cred.authentication.certificate, cred.authentication.certificate_len, &c->cert, &c->cert_len, &c->has_cert);
    copy_pem_or_der(cred.authentication.key, cred.authentication.key_len, &c->key, &c->key_len, &c->has_key);
    if (cred.authentication.key_password)
        c->key_password.assign(cred.authentication.key_password,
                               cred.authentication.key_password_len > 0 ? static_cast<size_t>(cred.authentication.key_password_len)
                                                                        : strlen(cred.authentication.key_password));
    const auto& s = cfg->session;
    if (s.protocol_ver == MQTT_PROTOCOL_V_5 || s.protocol_ver == MQTT_PROTOCOL_V_3_1) {
        ESP_LOGE(TAG, "The host runtime speaks MQTT 3.1.1 only");
        return false;
    }
    if (s.last_will.topic) {
        c->has_will = true;
        c->will_topic = s.last_will.topic;
        const char* msg = s.last_will.msg ? s.last_will.msg : "";
        size_t len = s.last_will.msg_len > 0 ? static_cast<size_t>(s.last_will.msg_len) : strlen(msg);
        c->will_msg.assign(msg, len);
        c->will_qos = s.last_will.qos;
        c->will_retain = s.last_will.retain != 0;
    }
    c->clean_session = !s.disable_clean_session;
    if (s.keepalive > 0) c->keepalive_s = s.keepalive;
    c->disable_keepalive = s.disable_keepalive;
    const auto& n = cfg->network;
    if (n.reconnect_timeout_ms > 0) c->reconnect_ms = n.reconnect_timeout_ms;
    if (n.timeout_ms > 0) c->timeout_ms = n.timeout_ms;
    c->auto_reconnect = !n.disable_auto_reconnect;
    if (cfg->buffer.size > 0) c->buffer_size = cfg->buffer.size;
    return true;
}

int enqueue_publish(esp_mqtt_client_handle_t c, const char* topic, const char* data, int len, int qos, int retain,
                    bool send_now, bool store) {
    if (!c || !topic) return -1;
    if (qos < 0 || qos > 2) return -1;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    if (len <= 0 && data) len = static_cast<int>(strlen(data));
    if (!data) len = 0;
    Unacked m{topic, std::string(data ? data : "", static_cast<size_t>(len)), qos, retain != 0, false};
    uint16_t id = qos ? c->next_msg_id() : 0;
    if (send_now) {
        if (c->state != esp_mqtt_client::CONNECTED) {
            if (qos == 0) return -1;
            c->queued.push_back({id, m});  // kept for after the reconnect, like the device's outbox
            return id;
        }
        return c->publish_now(id, m) ? id : -1;
    }
    if (qos == 0 && !store && c->state != esp_mqtt_client::CONNECTED) return -1;
    c->queued.push_back({id, m});
    {
        std::lock_guard<std::mutex> l(c->wake_mutex);
        c->wake.notify_all();
    }
    return id;
}

}  // namespace

extern "C" {

esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t* config) {
    if (!config) return nullptr;
    esp_mqtt_client* c = new esp_mqtt_client;
    if (!apply_config(c, config)) {
        delete c;
        return nullptr;
    }
    return c;
}

esp_err_t esp_mqtt_set_config(esp_mqtt_client_handle_t c, const esp_mqtt_client_config_t* config) {
    if (!c || !config) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    return apply_config(c, config) ? ESP_OK : ESP_FAIL;
}

esp_err_t esp_mqtt_client_set_uri(esp_mqtt_client_handle_t c, const char* uri) {
    if (!c || !uri) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    return parse_uri(c, uri) ? ESP_OK : ESP_FAIL;
}

esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t c) {
    if (!c) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    if (c->run.load()) {
        ESP_LOGE(TAG, "Client has started");
        return ESP_FAIL;
    }
    if (c->task.joinable()) c->task.join();
    c->state = esp_mqtt_client::INIT;
    c->run = true;
    c->task = std::thread([c] { c->task_main(); });
    return ESP_OK;
}

esp_err_t esp_mqtt_client_reconnect(esp_mqtt_client_handle_t c) {
    if (!c) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    if (c->state != esp_mqtt_client::WAIT_RECONNECT) return ESP_FAIL;
    c->reconnect_at = 0;
    c->state = esp_mqtt_client::INIT;
    std::lock_guard<std::mutex> l(c->wake_mutex);
    c->wake.notify_all();
    return ESP_OK;
}

esp_err_t esp_mqtt_client_disconnect(esp_mqtt_client_handle_t c) {
    if (!c) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    if (c->state != esp_mqtt_client::CONNECTED) return ESP_FAIL;
    c->send(mqtt::simple_packet(mqtt::DISCONNECT));
    c->abort_connection();
    return ESP_OK;
}

esp_err_t esp_mqtt_client_stop(esp_mqtt_client_handle_t c) {
    if (!c) return ESP_ERR_INVALID_ARG;
    if (std::this_thread::get_id() == c->task_id) {
        ESP_LOGE(TAG, "Client cannot be stopped from MQTT task");
        return ESP_FAIL;
    }
    {
        std::lock_guard<std::recursive_mutex> guard(c->lock);
        if (!c->run.load()) {
            ESP_LOGW(TAG, "Client asked to stop, but was not started");
            return ESP_FAIL;
        }
        if (c->state == esp_mqtt_client::CONNECTED) c->send(mqtt::simple_packet(mqtt::DISCONNECT));
        c->transport.close();
        c->state = esp_mqtt_client::STOPPED;
        c->run = false;
    }
    {
        std::lock_guard<std::mutex> l(c->wake_mutex);
        c->wake.notify_all();
    }
    if (c->task.joinable()) c->task.join();
    return ESP_OK;
}

esp_err_t esp_mqtt_client_destroy(esp_mqtt_client_handle_t c) {
    if (!c) return ESP_ERR_INVALID_ARG;
    if (c->run.load()) esp_mqtt_client_stop(c);
    {
        std::lock_guard<std::recursive_mutex> guard(c->lock);
        c->reset_event();
        c->dispatch(MQTT_EVENT_DELETED);
    }
    delete c;
    return ESP_OK;
}

int esp_mqtt_client_subscribe_multiple(esp_mqtt_client_handle_t c, const esp_mqtt_topic_t* list, int size) {
    if (!c || !list || size <= 0) return -1;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    if (c->state != esp_mqtt_client::CONNECTED) {
        ESP_LOGE(TAG, "Client has not connected");
        return -1;
    }
    std::vector<const char*> topics;
    std::vector<int> qos;
    for (int i = 0; i < size; i++) {
        topics.push_back(list[i].filter);
        qos.push_back(list[i].qos);
    }
    uint16_t id = c->next_msg_id();
    if (!c->send(mqtt::subscribe_packet(id, topics.data(), qos.data(), topics.size()))) {
        ESP_LOGE(TAG, "Error to subscribe topic=%s, qos=%d", topics[0], qos[0]);
        c->io_failed();
        return -1;
    }
    return id;
}

int esp_mqtt_client_subscribe_single(esp_mqtt_client_handle_t c, const char* topic, int qos) {
    esp_mqtt_topic_t t = {topic, qos};
    return esp_mqtt_client_subscribe_multiple(c, &t, 1);
}

int esp_mqtt_client_unsubscribe(esp_mqtt_client_handle_t c, const char* topic) {
    if (!c || !topic) return -1;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    if (c->state != esp_mqtt_client::CONNECTED) {
        ESP_LOGE(TAG, "Client has not connected");
        return -1;
    }
    uint16_t id = c->next_msg_id();
    if (!c->send(mqtt::unsubscribe_packet(id, topic))) {
        c->io_failed();
        return -1;
    }
    return id;
}

int esp_mqtt_client_publish(esp_mqtt_client_handle_t c, const char* topic, const char* data, int len, int qos,
                            int retain) {
    return enqueue_publish(c, topic, data, len, qos, retain, true, false);
}

int esp_mqtt_client_enqueue(esp_mqtt_client_handle_t c, const char* topic, const char* data, int len, int qos,
                            int retain, bool store) {
    return enqueue_publish(c, topic, data, len, qos, retain, false, store);
}

int esp_mqtt_client_get_outbox_size(esp_mqtt_client_handle_t c) {
    if (!c) return 0;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    int total = 0;
    for (auto& m : c->outbox) total += static_cast<int>(m.second.data.size() + m.second.topic.size());
    for (auto& m : c->queued) total += static_cast<int>(m.second.data.size() + m.second.topic.size());
    return total;
}

esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t c, esp_mqtt_event_id_t event,
                                         esp_event_handler_t handler, void* arg) {
    if (!c || !handler) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    c->handlers.push_back({event, handler, arg});
    return ESP_OK;
}

esp_err_t esp_mqtt_client_unregister_event(esp_mqtt_client_handle_t c, esp_mqtt_event_id_t event,
                                           esp_event_handler_t handler) {
    if (!c) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    for (auto it = c->handlers.begin(); it != c->handlers.end();) {
        if (it->id == event && it->fn == handler) it = c->handlers.erase(it);
        else ++it;
    }
    return ESP_OK;
}

esp_err_t esp_mqtt_dispatch_custom_event(esp_mqtt_client_handle_t c, esp_mqtt_event_t* event) {
    if (!c || !event) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::recursive_mutex> guard(c->lock);
    c->event = *event;
    c->dispatch(MQTT_USER_EVENT);
    return ESP_OK;
}

}  // extern "C"
