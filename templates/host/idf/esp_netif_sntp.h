/* esp_netif_sntp.h: ESP-IDF v5.5.3's declarations (components/esp_netif/include/esp_netif_sntp.h), for the host
 * runtime. servers[] has CONFIG_LWIP_SNTP_MAX_SERVERS slots as on the device: the Kconfig default 1 (sdkconfig.h)
 * unless sdkconfig.defaults sets it, so a list longer than the configuration fails to compile here as it does
 * there. The host clock is already right: "synchronisation" completes ~200 ms after esp_netif_sntp_init() while
 * the station has an IP. */
#pragma once

#include <sys/time.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "freertos/FreeRTOS.h"
#include "esp_err.h"
#include "esp_netif.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*esp_sntp_time_cb_t)(struct timeval *tv);

#define ESP_SNTP_SERVER_LIST(...)   { __VA_ARGS__ }

#define ESP_NETIF_SNTP_DEFAULT_CONFIG_MULTIPLE(servers_in_list, list_of_servers)   {   \
            .smooth_sync = false,                       \
            .server_from_dhcp = false,                  \
            .wait_for_sync = true,                      \
            .start = true,                              \
            .sync_cb = NULL,                            \
            .renew_servers_after_new_IP = false,        \
            .ip_event_to_renew = IP_EVENT_STA_GOT_IP,   \
            .index_of_first_server = 0,                 \
            .num_of_servers = (servers_in_list),        \
            .servers = list_of_servers,                 \
}

#define ESP_NETIF_SNTP_DEFAULT_CONFIG(server) \
            ESP_NETIF_SNTP_DEFAULT_CONFIG_MULTIPLE(1, {server})

typedef struct esp_sntp_config {
    bool smooth_sync;
    bool server_from_dhcp;
    bool wait_for_sync;
    bool start;
    esp_sntp_time_cb_t sync_cb;
    bool renew_servers_after_new_IP;
    ip_event_t ip_event_to_renew;
    size_t index_of_first_server;
    size_t num_of_servers;
    const char *servers[CONFIG_LWIP_SNTP_MAX_SERVERS];
} esp_sntp_config_t;

/* ESP_ERR_INVALID_ARG when num_of_servers > CONFIG_LWIP_SNTP_MAX_SERVERS, as lwIP's port refuses it. */
esp_err_t esp_netif_sntp_init(const esp_sntp_config_t *config);
esp_err_t esp_netif_sntp_start(void);
void esp_netif_sntp_deinit(void);
esp_err_t esp_netif_sntp_sync_wait(TickType_t tout);

#ifdef __cplusplus
}
#endif
