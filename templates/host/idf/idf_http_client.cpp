// Host runtime: the part of esp_http_client that esp_https_ota uses, over our TLS session (tls_session.h, mbedTLS
// 2.28). One HTTP/1.1 GET per open, Content-Length bodies; the server is verified against cert_pem and the URL's
// host (or common_name), the client certificate and key are presented together, as esp-tls does. Plain library
// code: no simulator calls beyond the TCP dialler every connection uses.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <algorithm>
#include <string>

#include "esp_http_client.h"
#include "esp_log.h"
#include "tls_session.h"

ESP_EVENT_DEFINE_BASE(ESP_HTTP_CLIENT_EVENT);

static const char* TAG = "HTTP_CLIENT";

struct esp_http_client {
    esp_http_client_config_t config;
    std::string host, path;
    uint16_t port = 443;
    bool tls = true;
    gen_host::Transport transport;
    int status = -1;
    int64_t content_length = -1;
    int64_t received = 0;
    std::string body_ahead;        // body bytes that arrived with the headers
};

namespace {

bool parse_url(esp_http_client* client, const char* url) {
    std::string text(url);
    size_t rest;
    if (text.compare(0, 8, "https://") == 0) {
        client->tls = true;
        client->port = 443;
        rest = 8;
    } else if (text.compare(0, 7, "http://") == 0) {
        client->tls = false;
        client->port = 80;
        rest = 7;
    } else {
        return false;
    }
    const size_t slash = text.find('/', rest);
    std::string authority = text.substr(rest, slash == std::string::npos ? std::string::npos : slash - rest);
    client->path = slash == std::string::npos ? "/" : text.substr(slash);
    const size_t colon = authority.rfind(':');
    if (colon != std::string::npos) {
        const long port = strtol(authority.c_str() + colon + 1, nullptr, 10);
        if (port <= 0 || port > 65535) return false;
        client->port = static_cast<uint16_t>(port);
        authority.resize(colon);
    }
    client->host = authority;
    return !client->host.empty();
}

}  // namespace

extern "C" {

esp_http_client_handle_t esp_http_client_init(const esp_http_client_config_t* config) {
    if (config == nullptr || config->url == nullptr) {
        ESP_LOGE(TAG, "config or url is NULL (this host runtime takes the URL form only)");
        return nullptr;
    }
    auto* client = new esp_http_client;
    client->config = *config;
    if (!parse_url(client, config->url)) {
        ESP_LOGE(TAG, "Error parse url %s", config->url);
        delete client;
        return nullptr;
    }
    return client;
}

esp_err_t esp_http_client_open(esp_http_client_handle_t client, int write_len) {
    (void)write_len;
    const esp_http_client_config_t& c = client->config;
    gen_host::TlsOptions options;
    options.use_tls = client->tls;
    options.ca = c.cert_pem;
    options.ca_len = c.cert_pem ? (c.cert_len ? c.cert_len : strlen(c.cert_pem) + 1) : 0;
    options.cert = c.client_cert_pem;
    options.cert_len = c.client_cert_pem ? (c.client_cert_len ? c.client_cert_len : strlen(c.client_cert_pem) + 1) : 0;
    options.key = c.client_key_pem;
    options.key_len = c.client_key_pem ? (c.client_key_len ? c.client_key_len : strlen(c.client_key_pem) + 1) : 0;
    options.key_password = c.client_key_password;
    options.key_password_len = c.client_key_password_len;
    options.verify_name = c.skip_cert_common_name_check ? nullptr : (c.common_name ? c.common_name : client->host.c_str());
    const int timeout = c.timeout_ms > 0 ? c.timeout_ms : 5000;   // esp_http_client's DEFAULT_TIMEOUT_MS
    options.connect_timeout_ms = timeout;
    options.handshake_timeout_ms = timeout;
    gen_host::TransportError error;
    if (!client->transport.open(client->host.c_str(), client->port, options, &error)) {
        ESP_LOGE("esp-tls", "Failed to open new connection to %s:%u: %s", client->host.c_str(), client->port,
                 error.summary().c_str());
        ESP_LOGE(TAG, "Connection failed, sock < 0");
        return ESP_ERR_HTTP_CONNECT;
    }
    char request[1024];
    const int length = snprintf(request, sizeof request,
                                "GET %s HTTP/1.1\r\nUser-Agent: %s\r\nHost: %s:%u\r\nContent-Length: 0\r\n\r\n",
                                client->path.c_str(), c.user_agent ? c.user_agent : "ESP32 HTTP Client/1.0",
                                client->host.c_str(), client->port);
    if (length < 0 || static_cast<size_t>(length) >= sizeof request ||
        client->transport.write(reinterpret_cast<const uint8_t*>(request), static_cast<size_t>(length), timeout) < 0) {
        ESP_LOGE(TAG, "Error write request");
        return ESP_ERR_HTTP_WRITE_DATA;
    }
    client->status = -1;
    client->content_length = -1;
    client->received = 0;
    client->body_ahead.clear();
    return ESP_OK;
}

int64_t esp_http_client_fetch_headers(esp_http_client_handle_t client) {
    const int timeout = client->config.timeout_ms > 0 ? client->config.timeout_ms : 5000;
    std::string head;
    uint8_t chunk[512];
    size_t end;
    while ((end = head.find("\r\n\r\n")) == std::string::npos) {
        const int n = client->transport.read(chunk, sizeof chunk, timeout);
        if (n <= 0) return ESP_FAIL;
        head.append(reinterpret_cast<const char*>(chunk), static_cast<size_t>(n));
        if (head.size() > 8192) return ESP_FAIL;
    }
    client->body_ahead = head.substr(end + 4);
    head.resize(end);
    if (sscanf(head.c_str(), "HTTP/%*d.%*d %d", &client->status) != 1) return ESP_FAIL;
    size_t at = 0;
    while ((at = head.find("\r\n", at)) != std::string::npos) {
        at += 2;
        if (strncasecmp(head.c_str() + at, "Content-Length:", 15) == 0) {
            client->content_length = strtoll(head.c_str() + at + 15, nullptr, 10);
        }
    }
    return client->content_length;
}

int esp_http_client_read(esp_http_client_handle_t client, char* buffer, int len) {
    if (client->content_length >= 0 && client->received >= client->content_length) return 0;
    int64_t wanted = len;
    if (client->content_length >= 0 && wanted > client->content_length - client->received) {
        wanted = client->content_length - client->received;
    }
    if (!client->body_ahead.empty()) {
        const size_t n = std::min(client->body_ahead.size(), static_cast<size_t>(wanted));
        memcpy(buffer, client->body_ahead.data(), n);
        client->body_ahead.erase(0, n);
        client->received += static_cast<int64_t>(n);
        return static_cast<int>(n);
    }
    const int timeout = client->config.timeout_ms > 0 ? client->config.timeout_ms : 5000;
    const int n = client->transport.read(reinterpret_cast<uint8_t*>(buffer), static_cast<size_t>(wanted), timeout);
    if (n < 0) return 0;                        // the connection closed
    if (n == 0) return -ESP_ERR_HTTP_EAGAIN;    // nothing within timeout_ms
    client->received += n;
    return n;
}

int esp_http_client_get_status_code(esp_http_client_handle_t client) { return client->status; }

int64_t esp_http_client_get_content_length(esp_http_client_handle_t client) { return client->content_length; }

bool esp_http_client_is_complete_data_received(esp_http_client_handle_t client) {
    return client->content_length >= 0 && client->received == client->content_length;
}

esp_err_t esp_http_client_close(esp_http_client_handle_t client) {
    client->transport.close();
    return ESP_OK;
}

esp_err_t esp_http_client_cleanup(esp_http_client_handle_t client) {
    if (client == nullptr) return ESP_FAIL;
    client->transport.close();
    delete client;
    return ESP_OK;
}

}  // extern "C"
