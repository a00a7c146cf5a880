// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// The link: WiFi station, clock, TLS to the broker, MQTT session (identity, last will, birth message,
// subscriptions), publish schedules and message dispatch. Your code lives in the project's src/ (see app.h and
// gen_link.h). What differs between specs (topics, intervals, features) comes from gen_config.h, rendered by gen.
// The main task never waits on the network; esp-mqtt runs its own task. Every failure is logged in words.

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esp_err.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "nvs.h"
#include "nvs_flash.h"

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
#endif

static const char *TAG = "link";

// The hooks your application defines (app.h declares them for it): one builder per scheduled publish entry and
// one handler per subscribe entry of the spec, named after the entry.
void app_setup(void);
void app_loop(void);
#define GEN_LINK_DECLARE_BUILDER(name, interval_ms) int app_build_##name(char *payload, size_t capacity);
GEN_LINK_SCHEDULES(GEN_LINK_DECLARE_BUILDER)
#define GEN_LINK_DECLARE_HANDLER(name, source, qos, max_payload) \
    void app_on_##name(const char *topic, const uint8_t *payload, size_t length);
GEN_LINK_SUBSCRIBES(GEN_LINK_DECLARE_HANDLER)

// ---- Settings ---------------------------------------------------------------------------------------------

#define GEN_LINK_PUBLISH_INDEX(name, source, qos, retain, max_payload) PUBLISH_##name,
enum publish_index {
    GEN_LINK_PUBLISHES(GEN_LINK_PUBLISH_INDEX)
    PUBLISH_COUNT
};
#define GEN_LINK_SUBSCRIBE_INDEX(name, source, qos, max_payload) SUBSCRIBE_##name,
enum subscribe_index {
    GEN_LINK_SUBSCRIBES(GEN_LINK_SUBSCRIBE_INDEX)
    SUBSCRIBE_COUNT
};

// Everything that tells one device from another. Every pointer stays valid for the life of the program
// (esp-mqtt keeps the certificate pointers it is given).
typedef struct {
    const char *device_id;
    const char *wifi_ssid;
    const char *wifi_password;
#if GEN_LINK_USES_PASSWORD
    const char *mqtt_password;
#endif
    const char *ca_pem;
#if GEN_LINK_OWN_KEY
    const char *bootstrap_password;   // the key and certificates are the device's own (provisioning.h)
#elif GEN_LINK_USES_CLIENT_CERT
    const char *cert_pem;
    const char *key_pem;
#endif
    const char *status_topic;
#if GEN_LINK_PUBLISH_COUNT > 0
    const char *publish_topics[PUBLISH_COUNT];
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    const char *subscribe_filters[SUBSCRIBE_COUNT];
#endif
#if GEN_LINK_OTA
    const char *ota_topic;
    const char *firmware_topic;
#endif
} settings_t;

#if GEN_LINK_SECRETS_NVS
static settings_t settings;

// Reads a string or a NUL-terminated PEM blob; the copy is never freed.
static const char *read_nvs_value(nvs_handle_t nvs, const char *key, bool blob, size_t max_length, bool *ok)
{
    size_t size = 0;
    esp_err_t err = blob ? nvs_get_blob(nvs, key, NULL, &size) : nvs_get_str(nvs, key, NULL, &size);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "[nvs] cannot read \"%s\" in namespace \"%s\": %s; flash this device's nvs.bin", key,
                 NVS_NAMESPACE, esp_err_to_name(err));
        *ok = false;
        return "";
    }
    if (size == 0 || size - 1 > max_length) {
        ESP_LOGE(TAG, "[nvs] \"%s\" is %u bytes; this firmware holds at most %u", key, (unsigned)size,
                 (unsigned)max_length);
        *ok = false;
        return "";
    }
    char *value = malloc(size);
    if (value == NULL) {
        ESP_LOGE(TAG, "[nvs] out of memory reading \"%s\"", key);
        *ok = false;
        return "";
    }
    err = blob ? nvs_get_blob(nvs, key, value, &size) : nvs_get_str(nvs, key, value, &size);
    if (err != ESP_OK || value[size - 1] != '\0') {
        ESP_LOGE(TAG, "[nvs] \"%s\" is not NUL-terminated text (%s)", key, esp_err_to_name(err));
        free(value);
        *ok = false;
        return "";
    }
    return value;
}

#if GEN_LINK_VAR_COUNT > 0
static gen_vars_t vars;   // the spec's vars:, this device's values, read from NVS as text

static const char *var_string(const char *text)
{
    return text;
}

static int32_t var_int(const char *text)
{
    return (int32_t)strtol(text, NULL, 10);   // written by gen as a decimal int32
}

static bool var_bool(const char *text)
{
    return strcmp(text, "1") == 0;            // written by gen as 1 or 0
}
#endif

static bool load_settings(void)
{
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READONLY, &nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "[nvs] cannot open namespace \"%s\": %s; flash this device's nvs.bin at 0x%x", NVS_NAMESPACE,
                 esp_err_to_name(err), NVS_PARTITION_OFFSET);
        return false;
    }
    bool ok = true;
    settings.device_id = read_nvs_value(nvs, NVS_KEY_DEVICE_ID, false, DEVICE_ID_CAPACITY, &ok);
    settings.wifi_ssid = read_nvs_value(nvs, NVS_KEY_WIFI_SSID, false, WIFI_SSID_CAPACITY, &ok);
    settings.wifi_password = read_nvs_value(nvs, NVS_KEY_WIFI_PASSWORD, false, WIFI_PASSWORD_CAPACITY, &ok);
#if GEN_LINK_USES_PASSWORD
    settings.mqtt_password = read_nvs_value(nvs, NVS_KEY_MQTT_PASSWORD, false, MQTT_PASSWORD_CAPACITY, &ok);
#endif
    settings.ca_pem = read_nvs_value(nvs, NVS_KEY_CA_PEM, true, PEM_CAPACITY, &ok);
#if GEN_LINK_OWN_KEY
    settings.bootstrap_password = read_nvs_value(nvs, NVS_KEY_BOOTSTRAP_PASSWORD, false, BOOTSTRAP_PASSWORD_CAPACITY,
                                                 &ok);
#elif GEN_LINK_USES_CLIENT_CERT
    settings.cert_pem = read_nvs_value(nvs, NVS_KEY_CERT_PEM, true, PEM_CAPACITY, &ok);
    settings.key_pem = read_nvs_value(nvs, NVS_KEY_KEY_PEM, true, PEM_CAPACITY, &ok);
#endif
    settings.status_topic = read_nvs_value(nvs, NVS_KEY_STATUS_TOPIC, false, TOPIC_CAPACITY, &ok);
    // Each topic's source in gen_config.h is its NVS key (secrets: nvs).
#define GEN_LINK_READ_PUBLISH(name, source, qos, retain, max_payload) \
    settings.publish_topics[PUBLISH_##name] = read_nvs_value(nvs, source, false, TOPIC_CAPACITY, &ok);
    GEN_LINK_PUBLISHES(GEN_LINK_READ_PUBLISH)
#define GEN_LINK_READ_SUBSCRIBE(name, source, qos, max_payload) \
    settings.subscribe_filters[SUBSCRIBE_##name] = read_nvs_value(nvs, source, false, TOPIC_CAPACITY, &ok);
    GEN_LINK_SUBSCRIBES(GEN_LINK_READ_SUBSCRIBE)
#if GEN_LINK_OTA
    settings.ota_topic = read_nvs_value(nvs, NVS_KEY_OTA_TOPIC, false, TOPIC_CAPACITY, &ok);
    settings.firmware_topic = read_nvs_value(nvs, NVS_KEY_FIRMWARE_TOPIC, false, TOPIC_CAPACITY, &ok);
#endif
    // Each var's source in gen_config.h is its NVS key (secrets: nvs); the value is text.
#define GEN_LINK_READ_VAR(name, type, source) \
    vars.name = var_##type(read_nvs_value(nvs, source, false, VAR_CAPACITY, &ok));
    GEN_LINK_VARS(GEN_LINK_READ_VAR)
    nvs_close(nvs);
    return ok;
}
#else
static const settings_t settings = {
    .device_id = DEVICE_ID,
    .wifi_ssid = WIFI_SSID,
    .wifi_password = WIFI_PASSWORD,
#if GEN_LINK_USES_PASSWORD
    .mqtt_password = MQTT_PASSWORD,
#endif
    .ca_pem = CA_PEM,
#if GEN_LINK_OWN_KEY
    .bootstrap_password = BOOTSTRAP_PASSWORD,
#elif GEN_LINK_USES_CLIENT_CERT
    .cert_pem = CLIENT_CERT_PEM,
    .key_pem = CLIENT_KEY_PEM,
#endif
    .status_topic = STATUS_TOPIC,
#if GEN_LINK_PUBLISH_COUNT > 0
    // Each topic's source in gen_config.h is the topic itself (secrets: embed).
#define GEN_LINK_PUBLISH_TOPIC(name, source, qos, retain, max_payload) [PUBLISH_##name] = source,
    .publish_topics = {GEN_LINK_PUBLISHES(GEN_LINK_PUBLISH_TOPIC)},
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0
#define GEN_LINK_SUBSCRIBE_FILTER(name, source, qos, max_payload) [SUBSCRIBE_##name] = source,
    .subscribe_filters = {GEN_LINK_SUBSCRIBES(GEN_LINK_SUBSCRIBE_FILTER)},
#endif
#if GEN_LINK_OTA
    .ota_topic = OTA_TOPIC,
    .firmware_topic = FIRMWARE_TOPIC,
#endif
};

#if GEN_LINK_VAR_COUNT > 0
// Each var's source in gen_config.h is its value (secrets: embed).
#define GEN_LINK_VAR_VALUE(name, type, source) .name = source,
static const gen_vars_t vars = {GEN_LINK_VARS(GEN_LINK_VAR_VALUE)};
#endif

static bool load_settings(void)
{
    return true;  // compiled in (secrets: embed)
}
#endif

// ---- Shared state and retry timing ------------------------------------------------------------------------

// Set by the WiFi and MQTT event handlers (other tasks), read by the main loop.
#define WIFI_HAS_IP_BIT BIT0
#define WIFI_DOWN_BIT BIT1        // a connect attempt failed or the link dropped: retry after a backoff
#define MQTT_CONNECTED_BIT BIT2
#define MQTT_DOWN_BIT BIT3        // the session ended or a connect failed: reconnect after a backoff
#if GEN_LINK_OWN_KEY
#define PROVISION_CONNECTED_BIT BIT4   // the broker accepted the credential: the main task tells provisioning.c
#define PROVISION_FAILED_BIT BIT5      // a connect failed (mqtt_refused says whether the broker refused it)
#define PROVISION_MESSAGE_BIT BIT6     // provision_inbox holds an answer for the main task
#define PROVISION_DROPPED_BIT BIT7     // an answer came while it was full: the main task asks for the latest again
#endif
static EventGroupHandle_t link_events;

static uint32_t now_ms(void)
{
    return (uint32_t)(esp_timer_get_time() / 1000);
}

// ---- WiFi -------------------------------------------------------------------------------------------------

static const char *wifi_reason_text(unsigned reason)
{
    switch (reason) {
    case WIFI_REASON_AUTH_EXPIRE: return "AUTH_EXPIRE";
    case WIFI_REASON_AUTH_LEAVE: return "AUTH_LEAVE";
    case WIFI_REASON_ASSOC_EXPIRE: return "ASSOC_EXPIRE";
    case WIFI_REASON_ASSOC_LEAVE: return "ASSOC_LEAVE";
    case WIFI_REASON_4WAY_HANDSHAKE_TIMEOUT: return "4WAY_HANDSHAKE_TIMEOUT (wrong password?)";
    case WIFI_REASON_BEACON_TIMEOUT: return "BEACON_TIMEOUT";
    case WIFI_REASON_NO_AP_FOUND: return "NO_AP_FOUND (SSID not in range?)";
    case WIFI_REASON_AUTH_FAIL: return "AUTH_FAIL (wrong password?)";
    case WIFI_REASON_ASSOC_FAIL: return "ASSOC_FAIL";
    case WIFI_REASON_HANDSHAKE_TIMEOUT: return "HANDSHAKE_TIMEOUT (wrong password?)";
    case WIFI_REASON_CONNECTION_FAIL: return "CONNECTION_FAIL";
    default: return "see wifi_err_reason_t";
    }
}

static void on_wifi_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_CONNECTED) {
        ESP_LOGI(TAG, "[wifi] associated with \"%s\"", settings.wifi_ssid);
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        const wifi_event_sta_disconnected_t *event = data;
        const bool had_ip = (xEventGroupGetBits(link_events) & WIFI_HAS_IP_BIT) != 0;
        ESP_LOGW(TAG, "[wifi] %s: reason %u %s", had_ip ? "lost connection" : "connect failed",
                 (unsigned)event->reason, wifi_reason_text(event->reason));
        xEventGroupClearBits(link_events, WIFI_HAS_IP_BIT);
        xEventGroupSetBits(link_events, WIFI_DOWN_BIT);
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        const ip_event_got_ip_t *event = data;
        ESP_LOGI(TAG, "[wifi] got IP " IPSTR, IP2STR(&event->ip_info.ip));
        xEventGroupSetBits(link_events, WIFI_HAS_IP_BIT);
    }
}

// A 32-byte SSID or a 64-digit key fills its field without a NUL, so copy at most the field's size.
static void copy_wifi_field(uint8_t *field, size_t size, const char *text)
{
    const size_t length = strlen(text);
    memcpy(field, text, length < size ? length : size);
}

static void start_wifi(void)
{
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init_config = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&init_config));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi_event, NULL, NULL));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_wifi_event, NULL, NULL));

    wifi_config_t config = {0};
    copy_wifi_field(config.sta.ssid, sizeof config.sta.ssid, settings.wifi_ssid);
    copy_wifi_field(config.sta.password, sizeof config.sta.password, settings.wifi_password);
    config.sta.threshold.authmode = settings.wifi_password[0] != '\0' ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    config.sta.pmf_cfg.capable = true;
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &config));
    ESP_LOGI(TAG, "[wifi] joining \"%s\"", settings.wifi_ssid);
    ESP_ERROR_CHECK(esp_wifi_start());  // WIFI_EVENT_STA_START then starts the first attempt
}

static backoff_t wifi_backoff = {WIFI_RETRY_FIRST_MS, WIFI_RETRY_CAP_MS, 0};
static bool wifi_retry_pending = false;
static uint32_t wifi_next_retry_ms = 0;

static void maintain_wifi(uint32_t now)
{
    const EventBits_t bits = xEventGroupGetBits(link_events);
    if (bits & WIFI_HAS_IP_BIT) {
        backoff_reset(&wifi_backoff);
    }
    if (bits & WIFI_DOWN_BIT) {
        xEventGroupClearBits(link_events, WIFI_DOWN_BIT);
        const uint32_t delay_ms = backoff_next_delay_ms(&wifi_backoff, esp_random());
        ESP_LOGI(TAG, "[wifi] retrying in %" PRIu32 " ms", delay_ms);
        wifi_retry_pending = true;
        wifi_next_retry_ms = now + delay_ms;
    }
    if (wifi_retry_pending && retry_due(now, wifi_next_retry_ms)) {
        wifi_retry_pending = false;
        esp_err_t err = esp_wifi_connect();
        if (err != ESP_OK) {
            ESP_LOGE(TAG, "[wifi] esp_wifi_connect: %s", esp_err_to_name(err));
            xEventGroupSetBits(link_events, WIFI_DOWN_BIT);
        }
    }
}

// ---- Clock ------------------------------------------------------------------------------------------------

// SNTP starts with the first IP address, and MQTT only once it has set the clock: mbedTLS checks the broker
// certificate's dates against it (CONFIG_MBEDTLS_HAVE_TIME_DATE), and before the first sync the clock says 1970,
// when no certificate is valid yet. While no time source answers the device stays offline, says so every
// TIME_SYNC_WAIT_MS, and SNTP keeps asking.
typedef enum { CLOCK_NOT_STARTED, CLOCK_WAITING, CLOCK_DONE, CLOCK_FAILED } clock_state_t;
static clock_state_t clock_state = CLOCK_NOT_STARTED;
static uint32_t clock_started_ms = 0;
static uint32_t clock_reported_ms = 0;

static void maintain_clock(uint32_t now)
{
    if (clock_state == CLOCK_NOT_STARTED) {
        if (!(xEventGroupGetBits(link_events) & WIFI_HAS_IP_BIT)) {
            return;
        }
        esp_sntp_config_t config = ESP_NETIF_SNTP_DEFAULT_CONFIG_MULTIPLE(NTP_SERVER_COUNT,
            ESP_SNTP_SERVER_LIST(NTP_SERVER_LIST));
        esp_err_t err = esp_netif_sntp_init(&config);
        if (err != ESP_OK) {
            ESP_LOGE(TAG, "[time] SNTP did not start: %s; without a clock MQTT does not start", esp_err_to_name(err));
            clock_state = CLOCK_FAILED;
            return;
        }
        ESP_LOGI(TAG, "[time] syncing with %s", NTP_SERVER_1);
        clock_state = CLOCK_WAITING;
        clock_started_ms = now;
        clock_reported_ms = now;
        return;
    }
    if (clock_state != CLOCK_WAITING) {
        return;
    }
    if (esp_netif_sntp_sync_wait(0) == ESP_OK) {
        time_t seconds = time(NULL);
        struct tm utc;
        gmtime_r(&seconds, &utc);
        char text[32];
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
        ESP_LOGI(TAG, "[time] synchronised: %s", text);
        clock_state = CLOCK_DONE;
    } else if (now - clock_reported_ms >= TIME_SYNC_WAIT_MS) {
        clock_reported_ms = now;
        ESP_LOGW(TAG, "[time] no answer from %s for %u s; MQTT waits for the clock (the broker certificate's dates "
                 "cannot be checked without it)", NTP_SERVER_1, (unsigned)((now - clock_started_ms) / 1000));
    }
}

// ---- MQTT -------------------------------------------------------------------------------------------------

static esp_mqtt_client_handle_t mqtt;
static backoff_t mqtt_backoff = {MQTT_RETRY_FIRST_MS, MQTT_RETRY_CAP_MS, 0};
static bool mqtt_retry_pending = false;
static uint32_t mqtt_next_attempt_ms = 0;
static bool mqtt_session_up = false;   // touched by the MQTT task only
static size_t broker_index = 0;        // the MQTT_HOSTS entry dialled: the next one after a lost or failed connect

static const char *broker_host(void)
{
    return MQTT_HOSTS[broker_index];
}
#if GEN_LINK_OWN_KEY
static const credential_t *mqtt_credential;   // what the client was started with (set before it starts)
static volatile bool mqtt_refused = false;    // the last connect failed by TLS or CONNACK, not the network
static char provision_inbox[PROVISION_RESPONSE_MAX];
static size_t provision_inbox_length;
#endif

static const char *connack_text(int code)
{
    switch (code) {
    case 1: return "1 BAD_PROTOCOL (broker refused MQTT 3.1.1)";
    case 2: return "2 ID_REJECTED (broker refused the client id)";
    case 3: return "3 SERVER_UNAVAILABLE";
    case 4: return "4 BAD_USERNAME_OR_PASSWORD";
    case 5: return "5 NOT_AUTHORIZED";
    default: return "unknown CONNACK code";
    }
}

static const char *tls_error_text(int code)
{
    switch (code) {
    case -0x2700: return "certificate verification failed";
    case -0x7780: return "the broker sent a fatal alert (it rejected our certificate?)";
    case -0x7280: return "the broker closed the connection";
    case -0x0050: return "connection reset";
    case -0x0052: return "unknown host";
    case -0x6800: return "handshake timed out";
    default: return "see mbedtls_strerror";
    }
}

// Appends formatted text to a NUL-terminated buffer, truncating at its end.
static void appendf(char *out, size_t size, const char *format, ...) __attribute__((format(printf, 3, 4)));
static void appendf(char *out, size_t size, const char *format, ...)
{
    const size_t used = strnlen(out, size);
    if (used + 1 >= size) {
        return;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(out + used, size - used, format, args);
    va_end(args);
}

// mbedTLS X.509 verification flags, as esp-tls reports them.
static void append_verify_flags(char *out, size_t size, int flags)
{
    static const struct {
        int flag;
        const char *name;
    } names[] = {
        {0x01, "EXPIRED"}, {0x02, "REVOKED"}, {0x04, "CN_MISMATCH (name dialled is not in the certificate)"},
        {0x08, "NOT_TRUSTED (not signed by our CA)"}, {0x40, "MISSING"}, {0x100, "OTHER"},
        {0x200, "FUTURE"}, {0x800, "KEY_USAGE"}, {0x1000, "EXT_KEY_USAGE"}, {0x4000, "BAD_MD"},
        {0x8000, "BAD_PK"}, {0x10000, "BAD_KEY"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) {
        if (flags & names[i].flag) {
            appendf(out, size, " %s", names[i].name);
        }
    }
}

static void log_mqtt_error(const esp_mqtt_error_codes_t *error)
{
    const char *what = mqtt_session_up ? "connection error" : "connect failed";
#if GEN_LINK_OWN_KEY
    mqtt_refused = error->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED ||
                   (error->error_type == MQTT_ERROR_TYPE_TCP_TRANSPORT && error->esp_tls_stack_err != 0 &&
                    error->esp_transport_sock_errno == 0);
#endif
    if (error->error_type == MQTT_ERROR_TYPE_TCP_TRANSPORT) {
        // Only the fields esp-tls filled in: its error, mbedTLS's, the certificate check's, the socket's.
        char detail[384] = "";
        if (error->esp_tls_stack_err != 0) {
            appendf(detail, sizeof detail, "; TLS error -0x%04x %s", (unsigned)-error->esp_tls_stack_err,
                    tls_error_text(error->esp_tls_stack_err));
        }
        if (error->esp_tls_cert_verify_flags != 0) {
            appendf(detail, sizeof detail, "; certificate verify flags 0x%x:", (unsigned)error->esp_tls_cert_verify_flags);
            append_verify_flags(detail, sizeof detail, error->esp_tls_cert_verify_flags);
        }
        if (error->esp_transport_sock_errno != 0) {
            appendf(detail, sizeof detail, "; socket errno %d %s", error->esp_transport_sock_errno,
                    strerror(error->esp_transport_sock_errno));
        }
        ESP_LOGE(TAG, "[mqtt] %s: %s%s", what, esp_err_to_name(error->esp_tls_last_esp_err), detail);
    } else if (error->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED) {
        ESP_LOGE(TAG, "[mqtt] connect failed: broker refused: %s", connack_text((int)error->connect_return_code));
    } else {
        ESP_LOGE(TAG, "[mqtt] error type %d (a subscription was refused?)", (int)error->error_type);
    }
}

#if GEN_LINK_SUBSCRIBE_COUNT > 0
typedef struct {
    int qos;
    size_t max_payload;
    void (*handler)(const char *topic, const uint8_t *payload, size_t length);
} subscription_t;

#define GEN_LINK_SUBSCRIPTION(name, source, qos, max_payload) [SUBSCRIBE_##name] = {qos, max_payload, app_on_##name},
static const subscription_t subscriptions[SUBSCRIBE_COUNT] = {
    GEN_LINK_SUBSCRIBES(GEN_LINK_SUBSCRIPTION)
};
static int subscribe_message_ids[SUBSCRIBE_COUNT];

// A received message, copied so handlers get NUL-terminated text (used by the MQTT task only).
static char inbound_topic[INBOUND_TOPIC_CAPACITY + 1];
static uint8_t inbound_payload[INBOUND_PAYLOAD_CAPACITY + 1];

static void dispatch_message(const esp_mqtt_event_t *event)
{
    if (event->current_data_offset != 0) {
        return;  // the rest of a message already dropped below
    }
    const size_t topic_length = (size_t)event->topic_len;
    if (topic_length > INBOUND_TOPIC_CAPACITY) {
        ESP_LOGW(TAG, "[mqtt] dropped a message: its topic is longer than %u bytes", (unsigned)INBOUND_TOPIC_CAPACITY);
        return;
    }
    memcpy(inbound_topic, event->topic, topic_length);
    inbound_topic[topic_length] = '\0';
    for (size_t i = 0; i < SUBSCRIBE_COUNT; ++i) {
        if (!topic_filter_matches(settings.subscribe_filters[i], inbound_topic)) {
            continue;
        }
        const size_t length = (size_t)event->total_data_len;
        if (length > subscriptions[i].max_payload || event->data_len != event->total_data_len) {
            ESP_LOGW(TAG, "[mqtt] dropped %u bytes on %s: larger than max_payload %u", (unsigned)length,
                     inbound_topic, (unsigned)subscriptions[i].max_payload);
            return;
        }
        ESP_LOGI(TAG, "[mqtt] received %u bytes on %s", (unsigned)length, inbound_topic);
        memcpy(inbound_payload, event->data, length);
        inbound_payload[length] = '\0';  // handlers may treat the payload as text
        subscriptions[i].handler(inbound_topic, inbound_payload, length);
        return;
    }
    ESP_LOGW(TAG, "[mqtt] message on %s matches no subscription; ignored", inbound_topic);
}
#endif

// Birth message and subscriptions: after every connect (the broker keeps no session for a clean session).
static void announce_and_subscribe(esp_mqtt_client_handle_t client)
{
    if (esp_mqtt_client_publish(client, settings.status_topic, STATUS_ONLINE, 0, STATUS_QOS, 1) < 0) {
        ESP_LOGE(TAG, "[mqtt] publish failed on %s", settings.status_topic);
    } else {
        ESP_LOGI(TAG, "[mqtt] published %u bytes to %s", (unsigned)(sizeof STATUS_ONLINE - 1), settings.status_topic);
    }
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    for (size_t i = 0; i < SUBSCRIBE_COUNT; ++i) {
        subscribe_message_ids[i] = esp_mqtt_client_subscribe(client, settings.subscribe_filters[i], subscriptions[i].qos);
        if (subscribe_message_ids[i] < 0) {
            ESP_LOGE(TAG, "[mqtt] subscribe failed on %s", settings.subscribe_filters[i]);
        }
    }
#endif
}
#if GEN_LINK_OWN_KEY

// An answer of the provisioning service: copied for the main task, which alone talks to provisioning.c.
static bool is_provisioning_answer(const esp_mqtt_event_t *event)
{
    const char *topic = mqtt_credential->response_topic;
    if (event->current_data_offset != 0 || (size_t)event->topic_len != strlen(topic) ||
        memcmp(event->topic, topic, (size_t)event->topic_len) != 0) {
        return event->current_data_offset != 0;  // the rest of a message dropped below
    }
    const size_t length = (size_t)event->total_data_len;
    if (length > sizeof provision_inbox || event->data_len != event->total_data_len) {
        ESP_LOGW(TAG, "[mqtt] dropped %u bytes on %s: larger than %u", (unsigned)length, topic,
                 (unsigned)sizeof provision_inbox);
        return true;
    }
    ESP_LOGI(TAG, "[mqtt] received %u bytes on %s", (unsigned)length, topic);
    if (xEventGroupGetBits(link_events) & PROVISION_MESSAGE_BIT) {
        // Not waited for: this task holds the client's lock, so the main task could not publish meanwhile.
        ESP_LOGW(TAG, "[cred] an answer came before the last one was read; asking for the latest again");
        xEventGroupSetBits(link_events, PROVISION_DROPPED_BIT);
        return true;
    }
    memcpy(provision_inbox, event->data, length);
    provision_inbox_length = length;
    xEventGroupSetBits(link_events, PROVISION_MESSAGE_BIT);
    return true;
}
#endif

static void on_mqtt_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    const esp_mqtt_event_t *event = data;
    switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
#if GEN_LINK_OWN_KEY
        if (mqtt_credential->kind == CREDENTIAL_BOOTSTRAP) {
            ESP_LOGI(TAG, "[cred] connected to %s:%u with the bootstrap login", broker_host(),
                     (unsigned)mqtt_credential->port);
        } else {
            ESP_LOGI(TAG, "[mqtt] connected to %s:%u as %s", broker_host(), (unsigned)mqtt_credential->port,
                     settings.device_id);
        }
        mqtt_session_up = true;
        xEventGroupSetBits(link_events, MQTT_CONNECTED_BIT);
        if (mqtt_credential->kind != CREDENTIAL_BOOTSTRAP) {
            announce_and_subscribe(event->client);  // the bootstrap login is not online as the device itself
        }
        if (esp_mqtt_client_subscribe(event->client, mqtt_credential->response_topic, 1) < 0) {
            ESP_LOGE(TAG, "[mqtt] subscribe failed on %s", mqtt_credential->response_topic);
        }
        xEventGroupSetBits(link_events, PROVISION_CONNECTED_BIT);
#else
        ESP_LOGI(TAG, "[mqtt] connected to %s:%u as %s", broker_host(), (unsigned)MQTT_PORT, settings.device_id);
        mqtt_session_up = true;
        xEventGroupSetBits(link_events, MQTT_CONNECTED_BIT);
        announce_and_subscribe(event->client);
#if GEN_LINK_OTA
        ota_on_connected(event->client);   // confirms an image on trial: it has reached the broker
#endif
#endif
        break;
    case MQTT_EVENT_DISCONNECTED:
        if (mqtt_session_up) {
            ESP_LOGW(TAG, "[mqtt] connection lost");
        }
#if GEN_LINK_OWN_KEY
        else {
            xEventGroupSetBits(link_events, PROVISION_FAILED_BIT);
        }
#endif
        mqtt_session_up = false;
        xEventGroupClearBits(link_events, MQTT_CONNECTED_BIT);
        xEventGroupSetBits(link_events, MQTT_DOWN_BIT);
        break;
    case MQTT_EVENT_ERROR:
        log_mqtt_error(event->error_handle);
        break;
#if GEN_LINK_SUBSCRIBE_COUNT > 0
    case MQTT_EVENT_SUBSCRIBED:
        for (size_t i = 0; i < SUBSCRIBE_COUNT; ++i) {
            if (subscribe_message_ids[i] == event->msg_id) {
                ESP_LOGI(TAG, "[mqtt] subscribed to %s (qos %d)", settings.subscribe_filters[i], subscriptions[i].qos);
            }
        }
        break;
#endif
#if GEN_LINK_SUBSCRIBE_COUNT > 0 || GEN_LINK_OWN_KEY || GEN_LINK_OTA
    case MQTT_EVENT_DATA:
#if GEN_LINK_OWN_KEY
        if (is_provisioning_answer(event)) {
            break;
        }
#endif
#if GEN_LINK_OTA && GEN_LINK_SUBSCRIBE_COUNT > 0
        if (!ota_on_message(event)) {
            dispatch_message(event);
        }
#elif GEN_LINK_OTA
        if (!ota_on_message(event)) {
            ESP_LOGW(TAG, "[mqtt] message on %.*s matches no subscription; ignored", event->topic_len, event->topic);
        }
#elif GEN_LINK_SUBSCRIBE_COUNT > 0
        dispatch_message(event);
#endif
        break;
#endif
    default:
        break;
    }
}

// Connected as this device (with its own key, the bootstrap login may only ask for a certificate).
static bool mqtt_online(void)
{
#if GEN_LINK_OWN_KEY
    return (xEventGroupGetBits(link_events) & MQTT_CONNECTED_BIT) && mqtt_credential != NULL &&
           mqtt_credential->kind != CREDENTIAL_BOOTSTRAP;
#else
    return (xEventGroupGetBits(link_events) & MQTT_CONNECTED_BIT) != 0;
#endif
}

// The client's whole configuration, dialling broker_host(): esp_mqtt_client_init takes it, and esp_mqtt_set_config
// takes it again to move to another broker (it sets every setting anew, so it is given all of them).
static esp_mqtt_client_config_t mqtt_config(void)
{
#if GEN_LINK_OWN_KEY
    const bool bootstrap = mqtt_credential->kind == CREDENTIAL_BOOTSTRAP;
    const esp_mqtt_client_config_t config = {
        .broker = {
            // Dialled by name: esp-tls checks it against the broker certificate.
            .address = {.hostname = broker_host(), .transport = MQTT_TRANSPORT_OVER_SSL, .port = mqtt_credential->port},
            .verification = {.certificate = mqtt_credential->ca_pem},
        },
        .credentials = {
            .username = mqtt_credential->username,
            .client_id = settings.device_id,
            .authentication = {
                .password = mqtt_credential->password,
                .certificate = mqtt_credential->cert_pem,
                .key = mqtt_credential->key_pem,
            },
        },
        .session = {
            .last_will = {.topic = bootstrap ? NULL : settings.status_topic, .msg = STATUS_OFFLINE,
                          .qos = STATUS_QOS, .retain = 1},
            .disable_clean_session = !MQTT_CLEAN_SESSION,
            .keepalive = MQTT_KEEPALIVE_S,
        },
        .network = {
            .timeout_ms = MQTT_NETWORK_TIMEOUT_MS,
            .disable_auto_reconnect = true,  // the main loop reconnects, with backoff and jitter
        },
        .buffer = {.size = MQTT_BUFFER_SIZE},
    };
#else
    const esp_mqtt_client_config_t config = {
        .broker = {
            // Dialled by name: esp-tls checks it against the broker certificate.
            .address = {.hostname = broker_host(), .transport = MQTT_TRANSPORT_OVER_SSL, .port = MQTT_PORT},
            .verification = {.certificate = settings.ca_pem},
        },
        .credentials = {
#if GEN_LINK_USES_PASSWORD
            .username = settings.device_id,
#endif
            .client_id = settings.device_id,
#if GEN_LINK_USES_PASSWORD || GEN_LINK_USES_CLIENT_CERT
            .authentication = {
#if GEN_LINK_USES_PASSWORD
                .password = settings.mqtt_password,
#endif
#if GEN_LINK_USES_CLIENT_CERT
                .certificate = settings.cert_pem,
                .key = settings.key_pem,
#endif
            },
#endif
        },
        .session = {
            .last_will = {.topic = settings.status_topic, .msg = STATUS_OFFLINE, .qos = STATUS_QOS, .retain = 1},
            .disable_clean_session = !MQTT_CLEAN_SESSION,
            .keepalive = MQTT_KEEPALIVE_S,
        },
        .network = {
            .timeout_ms = MQTT_NETWORK_TIMEOUT_MS,
            .disable_auto_reconnect = true,  // the main loop reconnects, with backoff and jitter
        },
        .buffer = {.size = MQTT_BUFFER_SIZE},
    };
#endif
    return config;
}

static void start_mqtt(void)
{
#if GEN_LINK_OWN_KEY
    // The credential provisioning.c says to use now: the bootstrap login (its own listener, no certificate, no
    // will) or one of the device's certificates. esp-mqtt keeps the pointers; they stay valid until it changes.
    mqtt_credential = provisioning_credential();
    const bool bootstrap = mqtt_credential->kind == CREDENTIAL_BOOTSTRAP;
#endif
    const esp_mqtt_client_config_t config = mqtt_config();
    mqtt = esp_mqtt_client_init(&config);
    if (mqtt == NULL) {
        ESP_LOGE(TAG, "[mqtt] esp_mqtt_client_init refused the configuration");
        return;
    }
    ESP_ERROR_CHECK(esp_mqtt_client_register_event(mqtt, MQTT_EVENT_ANY, on_mqtt_event, NULL));
#if GEN_LINK_OWN_KEY
    ESP_LOGI(TAG, "[mqtt] connecting to %s:%u as %s%s", broker_host(), (unsigned)mqtt_credential->port, settings.device_id,
             bootstrap ? " (bootstrap login, to get a certificate)" : "");
#else
    ESP_LOGI(TAG, "[mqtt] connecting to %s:%u as %s", broker_host(), (unsigned)MQTT_PORT, settings.device_id);
#endif
    ESP_ERROR_CHECK(esp_mqtt_client_start(mqtt));
}
#if GEN_LINK_OWN_KEY

static char provisioning_request[PROVISION_REQUEST_MAX];

static void log_provisioning(const char *line)
{
    ESP_LOGI(TAG, "%s", line);
}

// A real clock (SNTP synchronised): renewal by expiry waits for one.
static bool clock_synchronised = false;

static time_t synchronised_utc(void)
{
    if (!clock_synchronised && clock_state == CLOCK_DONE) {
        clock_synchronised = esp_netif_sntp_sync_wait(0) == ESP_OK;
    }
    return clock_synchronised ? time(NULL) : 0;
}

// The client is made again for another credential (another port, certificate or login): from this task, as
// esp_mqtt_client_stop must not run in the MQTT task.
static void restart_mqtt(void)
{
    mqtt_session_up = false;  // not a lost connection
    esp_mqtt_client_stop(mqtt);
    esp_mqtt_client_destroy(mqtt);
    mqtt = NULL;
    xEventGroupClearBits(link_events, MQTT_CONNECTED_BIT | MQTT_DOWN_BIT | PROVISION_CONNECTED_BIT |
                                          PROVISION_FAILED_BIT | PROVISION_MESSAGE_BIT | PROVISION_DROPPED_BIT);
    mqtt_retry_pending = false;
}

static bool same_credential(const credential_t *a, const credential_t *b)
{
    return a->kind == b->kind && a->cert_pem == b->cert_pem && a->ca_pem == b->ca_pem && a->port == b->port;
}

// Every call to provisioning.c is made here, in the main task.
static void run_provisioning(uint32_t now, EventBits_t bits)
{
    if (bits & PROVISION_FAILED_BIT) {
        xEventGroupClearBits(link_events, PROVISION_FAILED_BIT);
        provisioning_connect_failed(mqtt_refused, now);
    }
    if (bits & PROVISION_CONNECTED_BIT) {
        xEventGroupClearBits(link_events, PROVISION_CONNECTED_BIT);
        provisioning_connected(now);
    }
    if (bits & PROVISION_MESSAGE_BIT) {
        provisioning_message(provision_inbox, provision_inbox_length, now);
        xEventGroupClearBits(link_events, PROVISION_MESSAGE_BIT);
    }
    if ((bits & PROVISION_DROPPED_BIT) && (bits & MQTT_CONNECTED_BIT)) {
        // The service retains its last answer: subscribing again makes the broker send it once more.
        xEventGroupClearBits(link_events, PROVISION_DROPPED_BIT);
        if (esp_mqtt_client_subscribe(mqtt, mqtt_credential->response_topic, 1) < 0) {
            ESP_LOGE(TAG, "[mqtt] subscribe failed on %s", mqtt_credential->response_topic);
        }
    }
    if (provisioning_switch_credential()) {
        ESP_LOGI(TAG, "[cred] reconnecting with the new credential");
        restart_mqtt();
        return;
    }
    if (!(bits & MQTT_CONNECTED_BIT)) {
        return;
    }
    const size_t length = provisioning_poll(now, synchronised_utc(), provisioning_request, sizeof provisioning_request);
    if (length == 0) {
        return;
    }
    const char *topic = mqtt_credential->request_topic;
    if (esp_mqtt_client_publish(mqtt, topic, provisioning_request, (int)length, 1, 0) < 0) {
        ESP_LOGE(TAG, "[mqtt] publish failed on %s", topic);
    } else {
        ESP_LOGI(TAG, "[mqtt] published %u bytes to %s", (unsigned)length, topic);
    }
}
#endif

static void maintain_mqtt(uint32_t now)
{
    const EventBits_t bits = xEventGroupGetBits(link_events);
    if (mqtt == NULL) {
        if ((bits & WIFI_HAS_IP_BIT) && clock_state == CLOCK_DONE) {
            start_mqtt();
        }
        return;
    }
#if GEN_LINK_OWN_KEY
    run_provisioning(now, bits);
    if (mqtt == NULL) {
        return;  // made again for a new credential: it starts on the next pass
    }
#endif
    if (bits & MQTT_CONNECTED_BIT) {
        backoff_reset(&mqtt_backoff);
    }
    if (bits & MQTT_DOWN_BIT) {
        xEventGroupClearBits(link_events, MQTT_DOWN_BIT);
        broker_index = (broker_index + 1) % MQTT_HOST_COUNT;
        const uint32_t delay_ms = backoff_next_delay_ms(&mqtt_backoff, esp_random());
        ESP_LOGI(TAG, "[mqtt] retrying in %" PRIu32 " ms", delay_ms);
        mqtt_retry_pending = true;
        mqtt_next_attempt_ms = now + delay_ms;
    }
    if (mqtt_retry_pending && (bits & WIFI_HAS_IP_BIT) && retry_due(now, mqtt_next_attempt_ms)) {
#if GEN_LINK_OWN_KEY
        if (!same_credential(mqtt_credential, provisioning_credential())) {
            restart_mqtt();  // a given-up trial: dial with the credential provisioning.c says now
            return;
        }
#endif
#if GEN_LINK_OWN_KEY
        const uint16_t dial_port = mqtt_credential->port;
#else
        const uint16_t dial_port = MQTT_PORT;
#endif
#if MQTT_HOST_COUNT > 1
        // esp-mqtt dials the host it was configured with: the next broker is set before the reconnect.
        const esp_mqtt_client_config_t config = mqtt_config();
        if (esp_mqtt_set_config(mqtt, &config) != ESP_OK) {
            ESP_LOGE(TAG, "[mqtt] esp_mqtt_set_config refused %s", broker_host());
        }
#endif
        ESP_LOGI(TAG, "[mqtt] connecting to %s:%u as %s", broker_host(), (unsigned)dial_port,
                 settings.device_id);
        if (esp_mqtt_client_reconnect(mqtt) == ESP_OK) {
            mqtt_retry_pending = false;
        } else {
            mqtt_next_attempt_ms = now + MQTT_RETRY_FIRST_MS;  // the client is still closing the old session
        }
    }
}

#if GEN_LINK_PUBLISH_COUNT > 0
// ---- Publishing -------------------------------------------------------------------------------------------

typedef struct {
    int qos;
    int retain;
    size_t max_payload;
} publication_t;

static const publication_t publications[PUBLISH_COUNT] = {
#define GEN_LINK_PUBLICATION(name, source, qos, retain, max_payload) [PUBLISH_##name] = {qos, retain, max_payload},
    GEN_LINK_PUBLISHES(GEN_LINK_PUBLICATION)
};

static bool publish_to(enum publish_index index, const uint8_t *payload, size_t length)
{
    const char *topic = settings.publish_topics[index];
    if (length > publications[index].max_payload) {
        ESP_LOGE(TAG, "[mqtt] not sent to %s: %u bytes is more than max_payload %u", topic, (unsigned)length,
                 (unsigned)publications[index].max_payload);
        return false;
    }
    if (mqtt == NULL || !mqtt_online()) {
        ESP_LOGW(TAG, "[mqtt] not sent to %s: not connected", topic);
        return false;
    }
    if (esp_mqtt_client_publish(mqtt, topic, (const char *)payload, (int)length, publications[index].qos,
                                publications[index].retain) < 0) {
        ESP_LOGE(TAG, "[mqtt] publish failed on %s", topic);
        return false;
    }
    ESP_LOGI(TAG, "[mqtt] published %u bytes to %s", (unsigned)length, topic);
    return true;
}
#endif
#if GEN_LINK_SCHEDULE_COUNT > 0

// A payload built by the application on a fixed interval (the spec's `interval`).
typedef struct {
    enum publish_index publication;
    uint32_t interval_ms;
    int (*build)(char *payload, size_t capacity);
    uint32_t next_ms;
} schedule_t;

static schedule_t schedules[] = {
#define GEN_LINK_SCHEDULE(name, interval_ms) {PUBLISH_##name, interval_ms, app_build_##name, 0},
    GEN_LINK_SCHEDULES(GEN_LINK_SCHEDULE)
};

static char outbound_payload[OUTBOUND_PAYLOAD_CAPACITY + 1];

static void run_schedules(uint32_t now)
{
    if (!mqtt_online()) {
        return;
    }
    for (size_t i = 0; i < sizeof schedules / sizeof schedules[0]; ++i) {
        schedule_t *schedule = &schedules[i];
        if (!retry_due(now, schedule->next_ms)) {
            continue;
        }
        schedule->next_ms = now + schedule->interval_ms;
        const size_t capacity = publications[schedule->publication].max_payload + 1;
        const int length = schedule->build(outbound_payload, capacity);
        if (length < 0) {
            continue;  // the application has nothing to send this time
        }
        if ((size_t)length >= capacity) {
            ESP_LOGE(TAG, "[app] payload for %s needs %d bytes; max_payload is %u",
                     settings.publish_topics[schedule->publication], length, (unsigned)(capacity - 1));
            continue;
        }
        publish_to(schedule->publication, (const uint8_t *)outbound_payload, (size_t)length);
    }
}
#endif

// ---- What gen_link.h and app.h offer the application -------------------------------------------------------

const char *gen_link_device_id(void)
{
    return settings.device_id;
}

bool gen_link_connected(void)
{
    return mqtt_online();
}

bool gen_link_publish(const char *name, const void *payload, size_t length)
{
#define GEN_LINK_PUBLISH_BY_NAME(entry, source, qos, retain, max_payload) \
    if (strcmp(name, #entry) == 0) {                                       \
        return publish_to(PUBLISH_##entry, (const uint8_t *)payload, length); \
    }
    GEN_LINK_PUBLISHES(GEN_LINK_PUBLISH_BY_NAME)
    ESP_LOGW(TAG, "[mqtt] not sent: the spec has no publish entry named \"%s\"", name);
    (void)payload;
    (void)length;
    return false;
}

void gen_link_log(gen_link_log_level_t level, const char *format, ...)
{
    char text[GEN_LINK_LOG_TEXT_CAPACITY];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    switch (level) {
    case GEN_LINK_LOG_ERROR: ESP_LOGE("app", "%s", text); break;
    case GEN_LINK_LOG_WARN: ESP_LOGW("app", "%s", text); break;
    case GEN_LINK_LOG_INFO: ESP_LOGI("app", "%s", text); break;
    default: ESP_LOGD("app", "%s", text); break;
    }
}

const char *device_id(void)
{
    return settings.device_id;
}

#if GEN_LINK_VAR_COUNT > 0
const gen_vars_t *gen_vars(void)
{
    return &vars;
}
#endif

bool mqtt_is_connected(void)
{
    return mqtt_online();
}

#define GEN_LINK_DEFINE_PUBLISH(name, source, qos, retain, max_payload) \
    bool publish_##name(const uint8_t *payload, size_t length) { return publish_to(PUBLISH_##name, payload, length); }
GEN_LINK_PUBLISHES(GEN_LINK_DEFINE_PUBLISH)

// ---- Start and loop ---------------------------------------------------------------------------------------

#if GEN_LINK_LOG
static vprintf_like_t console_vprintf;   // where ESP-IDF's log went before: the UART console

// Every log line still goes to the console, and to log_publish, which keeps those at LOG_LEVEL for the log topic.
__attribute__((format(printf, 1, 0))) static int log_to_console_and_topic(const char *format, va_list args)
{
    char line[LOG_LINE_CAPACITY + 1];
    va_list copy;
    va_copy(copy, args);
    int length = vsnprintf(line, sizeof line, format, copy);
    va_end(copy);
    if (length > 0) {
        size_t kept = (size_t)length < sizeof line ? (size_t)length : sizeof line - 1;
        while (kept > 0 && (line[kept - 1] == '\n' || line[kept - 1] == '\r')) {
            kept--;
        }
        log_publish_take(log_publish_level_of(line, kept), line, kept, esp_log_timestamp());
    }
    return console_vprintf(format, args);
}

static bool publish_log_line(const char *topic, const char *line, size_t length)
{
    return esp_mqtt_client_publish(mqtt, topic, line, (int)length, 0, 0) >= 0;
}
#endif

void gen_link_start(void)
{
    esp_err_t err = nvs_flash_init();  // WiFi keeps its calibration in NVS (secrets: nvs: our settings too)
#if GEN_LINK_SECRETS_NVS
    if (err != ESP_OK) {
        // Never erase here: the partition holds this device's identity and credentials.
        ESP_LOGE(TAG, "[nvs] nvs_flash_init: %s; flash this device's nvs.bin at 0x%x", esp_err_to_name(err),
                 NVS_PARTITION_OFFSET);
    }
#else
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
#endif
    if (err != ESP_OK || !load_settings()) {
        ESP_LOGE(TAG, "[boot] halted: the device settings are incomplete");
        for (;;) {
            vTaskDelay(pdMS_TO_TICKS(1000));
        }
    }
#if GEN_LINK_LOG
    log_publish_begin(settings.device_id);
    console_vprintf = esp_log_set_vprintf(log_to_console_and_topic);
#endif
    ESP_LOGI(TAG, "[boot] device %s (%s)", settings.device_id, GEN_LINK_SUMMARY);
#if GEN_LINK_OWN_KEY
    const provisioning_settings_t provisioning = {
        .device_id = settings.device_id,
        .bootstrap_password = settings.bootstrap_password,
        .ca_pem = settings.ca_pem,
        .port = MQTT_PORT,
        .provision_port = MQTT_PROVISION_PORT,
        .log = log_provisioning,
    };
    if (!provisioning_begin(&provisioning)) {
        ESP_LOGE(TAG, "[boot] halted: the credentials partition cannot be used");
        for (;;) {
            vTaskDelay(pdMS_TO_TICKS(1000));
        }
    }
#endif
#if GEN_LINK_OTA
    const ota_settings_t ota = {
        .device_id = settings.device_id,
        .ca_pem = settings.ca_pem,
        .cert_pem = settings.cert_pem,
        .key_pem = settings.key_pem,
        .ota_topic = settings.ota_topic,
        .firmware_topic = settings.firmware_topic,
    };
    ota_start(&ota);
#endif
    link_events = xEventGroupCreate();
    app_setup();
    start_wifi();
}

void gen_link_loop(void)
{
    const uint32_t now = now_ms();
    maintain_wifi(now);
    maintain_clock(now);
    maintain_mqtt(now);
#if GEN_LINK_LOG
    if (gen_link_connected()) {
        log_publish_flush(publish_log_line);
    }
#endif
#if GEN_LINK_SCHEDULE_COUNT > 0
    run_schedules(now);
#endif
#if GEN_LINK_OTA
    ota_check_trial(now);
#endif
    app_loop();
    vTaskDelay(pdMS_TO_TICKS(LOOP_PERIOD_MS));
}

#ifndef GEN_LINK_OWN_MAIN
// The ESP-IDF entry point. An app that wants its own app_main() builds with -D GEN_LINK_OWN_MAIN (build_flags:)
// and calls gen_link_start() once and gen_link_loop() repeatedly from it.
void app_main(void)
{
    gen_link_start();
    for (;;) {
        gen_link_loop();
    }
}
#endif
