/* Host-runtime probe (ESP-IDF flavour): esp_wifi + esp_event, nvs, esp-mqtt over mutual TLS.
 * See ../README.md for the NVS keys and the lines printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "nvs.h"
#include "nvs_flash.h"

static const char *TAG = "probe";
static EventGroupHandle_t wifi_events;
#define WIFI_CONNECTED_BIT BIT0

static char host[64], client_id[64], sub_topic[128], pub_topic[128];
static char *ca, *cert, *key;
static uint16_t port = 8883;

static char *read_str(nvs_handle_t h, const char *name) {
    size_t len = 0;
    if (nvs_get_str(h, name, NULL, &len) != ESP_OK) return NULL;
    char *value = malloc(len);
    if (nvs_get_str(h, name, value, &len) != ESP_OK) {
        free(value);
        return NULL;
    }
    return value;
}

static void wifi_handler(void *arg, esp_event_base_t base, int32_t id, void *data) {
    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        wifi_event_sta_disconnected_t *event = (wifi_event_sta_disconnected_t *)data;
        ESP_LOGW(TAG, "WIFI disconnected reason %d", event->reason);
        xEventGroupClearBits(wifi_events, WIFI_CONNECTED_BIT);
        esp_wifi_connect();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        ip_event_got_ip_t *event = (ip_event_got_ip_t *)data;
        ESP_LOGI(TAG, "WIFI got ip " IPSTR, IP2STR(&event->ip_info.ip));
        xEventGroupSetBits(wifi_events, WIFI_CONNECTED_BIT);
    }
}

static void mqtt_handler(void *arg, esp_event_base_t base, int32_t id, void *data) {
    (void)arg;
    (void)base;
    esp_mqtt_event_handle_t event = data;
    switch ((esp_mqtt_event_id_t)id) {
        case MQTT_EVENT_CONNECTED:
            ESP_LOGI(TAG, "CONNECTED");
            esp_mqtt_client_subscribe(event->client, sub_topic, 1);
            int msg_id = esp_mqtt_client_publish(event->client, pub_topic, "hello from idf", 0, 1, 0);
            ESP_LOGI(TAG, "PUBLISH msg_id=%d", msg_id);
            break;
        case MQTT_EVENT_DISCONNECTED:
            ESP_LOGI(TAG, "DISCONNECTED");
            break;
        case MQTT_EVENT_SUBSCRIBED:
            ESP_LOGI(TAG, "SUBSCRIBED msg_id=%d", event->msg_id);
            break;
        case MQTT_EVENT_PUBLISHED:
            ESP_LOGI(TAG, "PUBLISHED msg_id=%d", event->msg_id);
            break;
        case MQTT_EVENT_DATA:
            printf("RX %.*s %.*s\n", event->topic_len, event->topic, event->data_len, event->data);
            break;
        case MQTT_EVENT_ERROR:
            if (event->error_handle->error_type == MQTT_ERROR_TYPE_TCP_TRANSPORT) {
                ESP_LOGE(TAG, "MQTT_EVENT_ERROR transport esp_tls=%s stack=-0x%x flags=0x%x errno=%d",
                         esp_err_to_name(event->error_handle->esp_tls_last_esp_err),
                         -event->error_handle->esp_tls_stack_err, event->error_handle->esp_tls_cert_verify_flags,
                         event->error_handle->esp_transport_sock_errno);
            } else if (event->error_handle->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED) {
                ESP_LOGE(TAG, "MQTT_EVENT_ERROR refused rc=%d", event->error_handle->connect_return_code);
            }
            break;
        default:
            break;
    }
}

void app_main(void) {
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);

    nvs_handle_t h;
    ESP_ERROR_CHECK(nvs_open("probe", NVS_READONLY, &h));
    size_t len = sizeof host;
    if (nvs_get_str(h, "host", host, &len) != ESP_OK) strcpy(host, "localhost");
    nvs_get_u16(h, "port", &port);
    len = sizeof client_id;
    nvs_get_str(h, "client_id", client_id, &len);
    len = sizeof sub_topic;
    nvs_get_str(h, "sub", sub_topic, &len);
    len = sizeof pub_topic;
    nvs_get_str(h, "pub", pub_topic, &len);
    ca = read_str(h, "ca");
    cert = read_str(h, "cert");
    key = read_str(h, "key");
    size_t blob_len = 0;
    unsigned long blob_sum = 0;
    if (nvs_get_blob(h, "blob", NULL, &blob_len) == ESP_OK) {
        uint8_t *blob = malloc(blob_len);
        nvs_get_blob(h, "blob", blob, &blob_len);
        for (size_t i = 0; i < blob_len; i++) blob_sum += blob[i];
        free(blob);
    }
    char small[4];
    size_t small_len = sizeof small;
    esp_err_t too_small = nvs_get_str(h, "host", small, &small_len);
    nvs_close(h);
    ESP_LOGI(TAG, "NVS host=%s port=%u blob_len=%u blob_sum=%lu small=%s needed=%u", host, port, (unsigned)blob_len,
             blob_sum, esp_err_to_name(too_small), (unsigned)small_len);

    wifi_events = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID, wifi_handler, NULL, NULL));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, wifi_handler, NULL, NULL));
    wifi_config_t wifi = {
        .sta = {
            .ssid = "sim-ssid",
            .password = "sim-password",
            .threshold.authmode = WIFI_AUTH_WPA2_PSK,
        },
    };
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &wifi));
    ESP_ERROR_CHECK(esp_wifi_start());
    xEventGroupWaitBits(wifi_events, WIFI_CONNECTED_BIT, pdFALSE, pdTRUE, portMAX_DELAY);

    esp_sntp_config_t sntp = ESP_NETIF_SNTP_DEFAULT_CONFIG("pool.ntp.org");
    esp_netif_sntp_init(&sntp);
    ESP_LOGI(TAG, "SNTP %s", esp_err_to_name(esp_netif_sntp_sync_wait(pdMS_TO_TICKS(2000))));

    char uri[128];
    snprintf(uri, sizeof uri, "mqtts://%s:%u", host, port);
    esp_mqtt_client_config_t config = {
        .broker.address.uri = uri,
        .broker.verification.certificate = ca,
        .credentials.client_id = client_id,
        .credentials.authentication.certificate = cert,
        .credentials.authentication.key = key,
        .session.last_will = {.topic = pub_topic, .msg = "offline", .qos = 1, .retain = 1},
        .network.reconnect_timeout_ms = CONFIG_PROBE_RECONNECT_MS,
    };
    esp_mqtt_client_handle_t client = esp_mqtt_client_init(&config);
    ESP_ERROR_CHECK(esp_mqtt_client_register_event(client, ESP_EVENT_ANY_ID, mqtt_handler, NULL));
    ESP_ERROR_CHECK(esp_mqtt_client_start(client));
    ESP_LOGI(TAG, "random=%08" PRIx32 " heap=%" PRIu32, esp_random(), esp_get_free_heap_size());
}
