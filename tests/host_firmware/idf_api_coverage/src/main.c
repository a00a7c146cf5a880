/* Calls every ESP-IDF-flavour API templates/host/README.md lists: it must compile (-Werror, C) and link. */
#include <string.h>

#include "esp_efuse.h"
#include "esp_err.h"
#include "esp_event.h"
#include "esp_idf_version.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "esp_tls_errors.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "nvs.h"
#include "nvs_flash.h"

static void handler(void *arg, esp_event_base_t base, int32_t id, void *data) {
    (void)arg; (void)base; (void)id; (void)data;
}

static void task(void *arg) {
    (void)arg;
    vTaskDelete(NULL);
}

void app_main(void) {
    char buf[64];
    ESP_ERROR_CHECK_WITHOUT_ABORT(ESP_OK);
    (void)esp_err_to_name(ESP_ERR_NVS_NOT_FOUND);
    (void)esp_err_to_name_r(ESP_FAIL, buf, sizeof buf);
    esp_log_level_set("*", ESP_LOG_INFO);
    (void)esp_log_level_get("x");
    ESP_LOGE("t", "e %d", 1); ESP_LOGW("t", "w"); ESP_LOGI("t", "i"); ESP_LOGD("t", "d"); ESP_LOGV("t", "v");
    ESP_LOG_BUFFER_HEX("t", "ab", 2); ESP_LOG_BUFFER_CHAR("t", "ab", 2);
    (void)esp_reset_reason(); (void)esp_get_free_heap_size(); (void)esp_get_minimum_free_heap_size();
    (void)esp_get_idf_version(); (void)esp_timer_get_time(); (void)esp_random(); esp_fill_random(buf, 4);
    uint8_t mac[6];
    esp_read_mac(mac, ESP_MAC_WIFI_STA); esp_efuse_mac_get_default(mac); esp_base_mac_addr_get(mac);
    ESP_LOGI("t", "mac " MACSTR " idf %d", MAC2STR(mac), ESP_IDF_VERSION_MAJOR);

    nvs_flash_init(); nvs_flash_init_partition("nvs");
    nvs_handle_t h;
    nvs_open("ns", NVS_READWRITE, &h);
    nvs_set_i8(h, "a", 1); nvs_set_u8(h, "b", 1); nvs_set_i16(h, "c", 1); nvs_set_u16(h, "d", 1);
    nvs_set_i32(h, "e", 1); nvs_set_u32(h, "f", 1); nvs_set_i64(h, "g", 1); nvs_set_u64(h, "h", 1);
    nvs_set_str(h, "i", "s"); nvs_set_blob(h, "j", "b", 1); nvs_commit(h);
    int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32; int64_t i64; uint64_t u64;
    size_t len = sizeof buf;
    nvs_get_i8(h, "a", &i8); nvs_get_u8(h, "b", &u8); nvs_get_i16(h, "c", &i16); nvs_get_u16(h, "d", &u16);
    nvs_get_i32(h, "e", &i32); nvs_get_u32(h, "f", &u32); nvs_get_i64(h, "g", &i64); nvs_get_u64(h, "h", &u64);
    nvs_get_str(h, "i", buf, &len); len = sizeof buf; nvs_get_blob(h, "j", buf, &len);
    nvs_type_t type; nvs_find_key(h, "a", &type);
    nvs_erase_key(h, "a"); nvs_erase_all(h); nvs_close(h);
    nvs_open_from_partition("nvs", "ns", NVS_READONLY, &h); nvs_close(h);
    nvs_flash_deinit(); nvs_flash_erase(); nvs_flash_erase_partition("nvs");

    esp_event_loop_create_default();
    esp_event_handler_instance_t inst;
    esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, handler, NULL);
    esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, handler, NULL, &inst);
    esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_START, NULL, 0, portMAX_DELAY);
    esp_event_handler_unregister(WIFI_EVENT, ESP_EVENT_ANY_ID, handler);
    esp_event_handler_instance_unregister(IP_EVENT, IP_EVENT_STA_GOT_IP, inst);
    esp_event_loop_args_t args = {.queue_size = 5, .task_name = "loop"};
    esp_event_loop_handle_t loop;
    esp_event_loop_create(&args, &loop);
    esp_event_handler_register_with(loop, WIFI_EVENT, 1, handler, NULL);
    esp_event_handler_instance_register_with(loop, WIFI_EVENT, 2, handler, NULL, &inst);
    esp_event_post_to(loop, WIFI_EVENT, 1, NULL, 0, 0);
    esp_event_handler_unregister_with(loop, WIFI_EVENT, 1, handler);
    esp_event_handler_instance_unregister_with(loop, WIFI_EVENT, 2, inst);
    esp_event_loop_delete(loop);

    esp_netif_init();
    esp_netif_t *netif = esp_netif_create_default_wifi_sta();
    esp_netif_ip_info_t info;
    esp_netif_get_ip_info(netif, &info);
    esp_netif_set_hostname(netif, "h");
    const char *hostname;
    esp_netif_get_hostname(netif, &hostname);
    (void)esp_netif_get_handle_from_ifkey("WIFI_STA_DEF");
    ESP_LOGI("t", IPSTR " %s", IP2STR(&info.ip), esp_ip4addr_ntoa(&info.ip, buf, sizeof buf));
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    esp_wifi_init(&init);
    esp_wifi_set_storage(WIFI_STORAGE_RAM);
    esp_wifi_set_mode(WIFI_MODE_STA);
    wifi_mode_t mode;
    esp_wifi_get_mode(&mode);
    wifi_config_t config = {.sta = {.ssid = "s", .password = "p", .threshold.authmode = WIFI_AUTH_WPA2_PSK}};
    esp_wifi_set_config(WIFI_IF_STA, &config);
    esp_wifi_get_config(WIFI_IF_STA, &config);
    esp_wifi_set_ps(WIFI_PS_NONE);
    esp_wifi_start();
    esp_wifi_connect();
    wifi_ap_record_t ap;
    esp_wifi_sta_get_ap_info(&ap);
    int rssi;
    esp_wifi_sta_get_rssi(&rssi);
    esp_wifi_get_mac(WIFI_IF_STA, mac);
    esp_sntp_config_t sntp = ESP_NETIF_SNTP_DEFAULT_CONFIG_MULTIPLE(2, ESP_SNTP_SERVER_LIST("a", "b"));
    esp_netif_sntp_init(&sntp);
    esp_netif_sntp_start();
    esp_netif_sntp_sync_wait(pdMS_TO_TICKS(10));
    esp_netif_sntp_deinit();

    TaskHandle_t handle;
    xTaskCreate(task, "t", 2048, NULL, 5, &handle);
    xTaskCreatePinnedToCore(task, "t", 2048, NULL, 5, NULL, 1);
    vTaskDelay(1);
    TickType_t wake = xTaskGetTickCount();
    vTaskDelayUntil(&wake, 1);
    (void)pcTaskGetName(NULL); (void)uxTaskGetStackHighWaterMark(NULL); (void)xTaskGetCurrentTaskHandle();
    EventGroupHandle_t group = xEventGroupCreate();
    xEventGroupSetBits(group, BIT0);
    xEventGroupWaitBits(group, BIT0, pdTRUE, pdTRUE, portMAX_DELAY);
    xEventGroupClearBits(group, BIT1);
    (void)xEventGroupGetBits(group);
    vEventGroupDelete(group);
    SemaphoreHandle_t m = xSemaphoreCreateMutex(), r = xSemaphoreCreateRecursiveMutex(),
                      bin = xSemaphoreCreateBinary(), cnt = xSemaphoreCreateCounting(2, 0);
    xSemaphoreTake(m, portMAX_DELAY); xSemaphoreGive(m);
    xSemaphoreTakeRecursive(r, 0); xSemaphoreTakeRecursive(r, 0); xSemaphoreGiveRecursive(r); xSemaphoreGiveRecursive(r);
    xSemaphoreGive(bin); xSemaphoreTake(bin, 0); xSemaphoreGive(cnt); xSemaphoreTake(cnt, 0);
    vSemaphoreDelete(m); vSemaphoreDelete(r); vSemaphoreDelete(bin); vSemaphoreDelete(cnt);
    QueueHandle_t q = xQueueCreate(2, sizeof(int));
    int item = 1;
    xQueueSend(q, &item, 0); xQueueSendToFront(q, &item, 0); xQueueReceive(q, &item, 0);
    (void)uxQueueMessagesWaiting(q); xQueueReset(q); vQueueDelete(q);

    esp_mqtt_client_config_t mqtt = {
        .broker.address.uri = "mqtts://localhost:1",
        .broker.verification.certificate = "",
        .credentials.client_id = "id",
        .session.last_will = {.topic = "t", .msg = "m", .qos = 1, .retain = 1},
        .network.disable_auto_reconnect = true,
    };
    esp_mqtt_client_handle_t client = esp_mqtt_client_init(&mqtt);
    esp_mqtt_client_register_event(client, MQTT_EVENT_ANY, handler, NULL);
    esp_mqtt_client_unregister_event(client, MQTT_EVENT_ANY, handler);
    esp_mqtt_client_set_uri(client, "mqtts://localhost:2");
    esp_mqtt_client_start(client);
    (void)esp_mqtt_client_publish(client, "t", "d", 0, 0, 0);
    (void)esp_mqtt_client_enqueue(client, "t", "d", 0, 1, 0, true);
    (void)esp_mqtt_client_subscribe(client, "t", 1);
    esp_mqtt_topic_t topics[] = {{"a", 0}, {"b", 1}};
    (void)esp_mqtt_client_subscribe(client, topics, 2);
    (void)esp_mqtt_client_unsubscribe(client, "t");
    (void)esp_mqtt_client_get_outbox_size(client);
    esp_mqtt_client_reconnect(client);
    esp_mqtt_client_disconnect(client);
    esp_mqtt_client_stop(client);
    esp_mqtt_client_destroy(client);
    (void)esp_efuse_update_secure_version(esp_efuse_read_secure_version());
    (void)esp_efuse_check_secure_version(0);
    ESP_LOGI("t", "done %d", ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED);
    esp_restart();
}
