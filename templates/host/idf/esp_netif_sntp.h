/* esp_netif_sntp.h (ESP-IDF >= 5.1 API) for the host runtime. The host clock is already right:
 * "synchronisation" completes ~200 ms after esp_netif_sntp_init() while the station has an IP. */
#pragma once

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>
#include "esp_err.h"
#include "freertos/FreeRTOS.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CONFIG_LWIP_SNTP_MAX_SERVERS_HOST 3

typedef void (*esp_sntp_time_cb_t)(struct timeval *tv);

typedef struct esp_sntp_config {
    bool smooth_sync;
    bool server_from_dhcp;
    bool wait_for_sync;
    bool start;
    esp_sntp_time_cb_t sync_cb;
    bool renew_servers_after_new_IP;
    int ip_event_to_renew;
    size_t index_of_first_server;
    size_t num_of_servers;
    const char *servers[CONFIG_LWIP_SNTP_MAX_SERVERS_HOST];
} esp_sntp_config_t;

#define ESP_SNTP_SERVER_LIST(...) { __VA_ARGS__ }

#define ESP_NETIF_SNTP_DEFAULT_CONFIG_MULTIPLE(servers_in_list, list_of_servers) {  \
        .smooth_sync = false,                                                     \
        .server_from_dhcp = false,                                                \
        .wait_for_sync = true,                                                    \
        .start = true,                                                            \
        .sync_cb = NULL,                                                          \
        .renew_servers_after_new_IP = false,                                      \
        .ip_event_to_renew = 0,                                                   \
        .index_of_first_server = 0,                                               \
        .num_of_servers = (servers_in_list),                                      \
        .servers = list_of_servers,                                               \
    }

#define ESP_NETIF_SNTP_DEFAULT_CONFIG(server) \
    ESP_NETIF_SNTP_DEFAULT_CONFIG_MULTIPLE(1, ESP_SNTP_SERVER_LIST(server))

esp_err_t esp_netif_sntp_init(const esp_sntp_config_t *config);
esp_err_t esp_netif_sntp_start(void);
void esp_netif_sntp_deinit(void);
esp_err_t esp_netif_sntp_sync_wait(TickType_t tout);

#ifdef __cplusplus
}
#endif
