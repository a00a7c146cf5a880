// Host runtime: esp_wifi (station), esp_netif and esp_netif_sntp over the simulated access point.
// Events go to the default event loop, as the device's WiFi driver and netif post them.
#include <arpa/inet.h>
#include <string.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_wifi.h"
#include "gen_sim.h"

ESP_EVENT_DEFINE_BASE(WIFI_EVENT);
ESP_EVENT_DEFINE_BASE(IP_EVENT);

struct esp_netif_obj {
    std::string hostname = "espressif";
};

namespace {

using Clock = std::chrono::steady_clock;

const int ASSOCIATE_MS = 100;       // association + DHCP while the AP is reachable
const int GOT_IP_AFTER_MS = 50;
const int NO_AP_FOUND_MS = 2000;    // a scan that finds nothing

struct Station {
    std::mutex m;
    std::condition_variable cv;
    bool initialized = false;
    bool started = false;
    wifi_mode_t mode = WIFI_MODE_NULL;
    wifi_config_t config{};
    bool attempt_pending = false;
    Clock::time_point attempt_due;
    bool associated = false;
    bool ip_pending = false;
    Clock::time_point ip_due;
    bool has_ip = false;
    bool worker_started = false;
} sta;

esp_netif_obj sta_netif;

wifi_event_sta_disconnected_t disconnected_event(uint8_t reason) {
    wifi_event_sta_disconnected_t ev;
    memset(&ev, 0, sizeof ev);
    size_t len = strnlen(reinterpret_cast<const char*>(sta.config.sta.ssid), sizeof sta.config.sta.ssid);
    memcpy(ev.ssid, sta.config.sta.ssid, len);
    ev.ssid_len = static_cast<uint8_t>(len);
    memset(ev.bssid, 0x11, sizeof ev.bssid);
    ev.reason = reason;
    ev.rssi = -90;
    return ev;
}

// Called with sta.m held (posting only queues the event, so the order of events is kept).
void lose_association(uint8_t reason) {
    sta.associated = false;
    sta.ip_pending = false;
    sta.has_ip = false;
    gen_sim_set_have_ip(false);
    wifi_event_sta_disconnected_t ev = disconnected_event(reason);
    esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_DISCONNECTED, &ev, sizeof ev, portMAX_DELAY);
}

void station_worker() {
    std::unique_lock<std::mutex> lock(sta.m);
    for (;;) {
        Clock::time_point next = Clock::now() + std::chrono::hours(1);
        if (sta.attempt_pending) next = std::min(next, sta.attempt_due);
        if (sta.ip_pending) next = std::min(next, sta.ip_due);
        sta.cv.wait_until(lock, next);
        Clock::time_point now = Clock::now();
        if (sta.attempt_pending && now >= sta.attempt_due) {
            sta.attempt_pending = false;
            bool ap_found = gen_sim_link_up() && sta.config.sta.ssid[0] != 0;
            if (ap_found) {
                sta.associated = true;
                wifi_event_sta_connected_t ev;
                memset(&ev, 0, sizeof ev);
                size_t len = strnlen(reinterpret_cast<const char*>(sta.config.sta.ssid), sizeof sta.config.sta.ssid);
                memcpy(ev.ssid, sta.config.sta.ssid, len);
                ev.ssid_len = static_cast<uint8_t>(len);
                memset(ev.bssid, 0x11, sizeof ev.bssid);
                ev.channel = 6;
                ev.authmode = WIFI_AUTH_WPA2_PSK;
                ev.aid = 1;
                esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_CONNECTED, &ev, sizeof ev, portMAX_DELAY);
                sta.ip_pending = true;
                sta.ip_due = now + std::chrono::milliseconds(GOT_IP_AFTER_MS);
            } else {
                wifi_event_sta_disconnected_t ev = disconnected_event(WIFI_REASON_NO_AP_FOUND);
                esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_DISCONNECTED, &ev, sizeof ev, portMAX_DELAY);
            }
        }
        if (sta.ip_pending && now >= sta.ip_due) {
            sta.ip_pending = false;
            if (sta.associated) {
                sta.has_ip = true;
                gen_sim_set_have_ip(true);
                ip_event_got_ip_t ev;
                memset(&ev, 0, sizeof ev);
                ev.esp_netif = &sta_netif;
                ev.ip_info.ip.addr = htonl(INADDR_LOOPBACK);
                ev.ip_info.netmask.addr = htonl(0xFF000000u);
                ev.ip_info.gw.addr = htonl(INADDR_LOOPBACK);
                ev.ip_changed = true;
                esp_event_post(IP_EVENT, IP_EVENT_STA_GOT_IP, &ev, sizeof ev, portMAX_DELAY);
            }
        }
    }
}

void on_link_change(bool up) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!up && sta.associated) lose_association(WIFI_REASON_ASSOC_LEAVE);
}

}  // namespace

extern "C" {

esp_err_t esp_netif_init(void) { return ESP_OK; }
esp_netif_t* esp_netif_create_default_wifi_sta(void) { return &sta_netif; }
esp_netif_t* esp_netif_create_default_wifi_ap(void) { return nullptr; }
void esp_netif_destroy_default_wifi(void*) {}
void esp_netif_destroy(esp_netif_t*) {}
esp_netif_t* esp_netif_get_handle_from_ifkey(const char* if_key) {
    return (if_key && strcmp(if_key, "WIFI_STA_DEF") == 0) ? &sta_netif : nullptr;
}

esp_err_t esp_netif_get_ip_info(esp_netif_t* netif, esp_netif_ip_info_t* info) {
    if (!netif || !info) return ESP_ERR_INVALID_ARG;
    memset(info, 0, sizeof *info);
    std::lock_guard<std::mutex> lock(sta.m);
    if (sta.has_ip) {
        info->ip.addr = htonl(INADDR_LOOPBACK);
        info->netmask.addr = htonl(0xFF000000u);
        info->gw.addr = htonl(INADDR_LOOPBACK);
    }
    return ESP_OK;
}

esp_err_t esp_netif_set_hostname(esp_netif_t* netif, const char* hostname) {
    if (!netif || !hostname) return ESP_ERR_INVALID_ARG;
    netif->hostname = hostname;
    return ESP_OK;
}

esp_err_t esp_netif_get_hostname(esp_netif_t* netif, const char** hostname) {
    if (!netif || !hostname) return ESP_ERR_INVALID_ARG;
    *hostname = netif->hostname.c_str();
    return ESP_OK;
}

char* esp_ip4addr_ntoa(const esp_ip4_addr_t* addr, char* buf, int buflen) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&addr->addr);
    snprintf(buf, static_cast<size_t>(buflen), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    return buf;
}

esp_err_t esp_wifi_init(const wifi_init_config_t* config) {
    if (!config) return ESP_ERR_INVALID_ARG;
    std::lock_guard<std::mutex> lock(sta.m);
    sta.initialized = true;
    if (!sta.worker_started) {
        sta.worker_started = true;
        std::thread(station_worker).detach();
        gen_sim_on_link_change(on_link_change);
    }
    return ESP_OK;
}

esp_err_t esp_wifi_deinit(void) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (sta.started) return ESP_ERR_WIFI_NOT_STOPPED;
    sta.initialized = false;
    return ESP_OK;
}

esp_err_t esp_wifi_set_mode(wifi_mode_t mode) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (mode >= WIFI_MODE_MAX) return ESP_ERR_INVALID_ARG;
    sta.mode = mode;
    return ESP_OK;
}

esp_err_t esp_wifi_get_mode(wifi_mode_t* mode) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    *mode = sta.mode;
    return ESP_OK;
}

esp_err_t esp_wifi_set_config(wifi_interface_t interface, wifi_config_t* conf) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (interface != WIFI_IF_STA) return ESP_ERR_WIFI_IF;
    if (sta.mode != WIFI_MODE_STA && sta.mode != WIFI_MODE_APSTA) return ESP_ERR_WIFI_MODE;
    sta.config = *conf;
    return ESP_OK;
}

esp_err_t esp_wifi_get_config(wifi_interface_t interface, wifi_config_t* conf) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (interface != WIFI_IF_STA) return ESP_ERR_WIFI_IF;
    *conf = sta.config;
    return ESP_OK;
}

esp_err_t esp_wifi_set_storage(wifi_storage_t) { return ESP_OK; }
esp_err_t esp_wifi_set_ps(wifi_ps_type_t) { return ESP_OK; }

esp_err_t esp_wifi_start(void) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (sta.started) return ESP_OK;
    sta.started = true;
    if (sta.mode == WIFI_MODE_STA || sta.mode == WIFI_MODE_APSTA)
        esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_START, nullptr, 0, portMAX_DELAY);
    return ESP_OK;
}

esp_err_t esp_wifi_stop(void) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (!sta.started) return ESP_OK;
    sta.attempt_pending = false;
    if (sta.associated) lose_association(WIFI_REASON_ASSOC_LEAVE);
    sta.started = false;
    esp_event_post(WIFI_EVENT, WIFI_EVENT_STA_STOP, nullptr, 0, portMAX_DELAY);
    return ESP_OK;
}

esp_err_t esp_wifi_connect(void) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (!sta.started) return ESP_ERR_WIFI_NOT_STARTED;
    if (sta.mode != WIFI_MODE_STA && sta.mode != WIFI_MODE_APSTA) return ESP_ERR_WIFI_MODE;
    if (sta.associated || sta.attempt_pending) return ESP_OK;
    bool ap_found = gen_sim_link_up() && sta.config.sta.ssid[0] != 0;
    sta.attempt_pending = true;
    sta.attempt_due = Clock::now() + std::chrono::milliseconds(ap_found ? ASSOCIATE_MS : NO_AP_FOUND_MS);
    sta.cv.notify_all();
    return ESP_OK;
}

esp_err_t esp_wifi_disconnect(void) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.initialized) return ESP_ERR_WIFI_NOT_INIT;
    if (!sta.started) return ESP_ERR_WIFI_NOT_STARTED;
    sta.attempt_pending = false;
    if (sta.associated) lose_association(WIFI_REASON_ASSOC_LEAVE);
    return ESP_OK;
}

esp_err_t esp_wifi_sta_get_ap_info(wifi_ap_record_t* info) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.associated) return ESP_ERR_WIFI_CONN;
    memset(info, 0, sizeof *info);
    memset(info->bssid, 0x11, sizeof info->bssid);
    memcpy(info->ssid, sta.config.sta.ssid, sizeof sta.config.sta.ssid);
    info->primary = 6;
    info->rssi = -55;
    info->authmode = WIFI_AUTH_WPA2_PSK;
    return ESP_OK;
}

esp_err_t esp_wifi_sta_get_rssi(int* rssi) {
    std::lock_guard<std::mutex> lock(sta.m);
    if (!sta.associated) return ESP_ERR_WIFI_CONN;
    *rssi = -55;
    return ESP_OK;
}

esp_err_t esp_wifi_get_mac(wifi_interface_t ifx, uint8_t mac[6]) {
    return esp_read_mac(mac, ifx == WIFI_IF_AP ? ESP_MAC_WIFI_SOFTAP : ESP_MAC_WIFI_STA);
}

// ---- esp_netif_sntp: the host clock is already right; "sync" completes shortly after init ----------

namespace {
std::mutex sntp_mutex;
bool sntp_running = false;
Clock::time_point sntp_synced_at;
esp_sntp_time_cb_t sntp_cb = nullptr;
}  // namespace

esp_err_t esp_netif_sntp_init(const esp_sntp_config_t* config) {
    if (!config) return ESP_ERR_INVALID_ARG;
    if (config->num_of_servers > gen_sim_sntp_max_servers) {  // esp_netif_sntp.c sntp_init_api()
        ESP_LOGE("esp_netif_sntp", "Tried to configure more servers than enabled in lwip. Please update CONFIG_SNTP_MAX_SERVERS");
        return ESP_ERR_INVALID_ARG;
    }
    std::lock_guard<std::mutex> lock(sntp_mutex);
    if (sntp_running) return ESP_ERR_INVALID_STATE;
    sntp_cb = config->sync_cb;
    if (config->start) {
        sntp_running = true;
        sntp_synced_at = Clock::now() + std::chrono::milliseconds(200);
    }
    return ESP_OK;
}

esp_err_t esp_netif_sntp_start(void) {
    std::lock_guard<std::mutex> lock(sntp_mutex);
    sntp_running = true;
    sntp_synced_at = Clock::now() + std::chrono::milliseconds(200);
    return ESP_OK;
}

void esp_netif_sntp_deinit(void) {
    std::lock_guard<std::mutex> lock(sntp_mutex);
    sntp_running = false;
}

esp_err_t esp_netif_sntp_sync_wait(TickType_t tout) {
    Clock::time_point deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<uint64_t>(tout) * 1000u / gen_sim_tick_hz);
    for (;;) {
        Clock::time_point synced;
        {
            std::lock_guard<std::mutex> lock(sntp_mutex);
            if (!sntp_running) return ESP_ERR_TIMEOUT;
            synced = sntp_synced_at;
        }
        Clock::time_point now = Clock::now();
        if (now >= synced && gen_sim_have_ip() && gen_sim_time_source_answers()) {
            esp_sntp_time_cb_t cb;
            {
                std::lock_guard<std::mutex> lock(sntp_mutex);
                cb = sntp_cb;
                sntp_cb = nullptr;  // the callback fires once per sync
            }
            if (cb) {
                struct timeval tv;
                gettimeofday(&tv, nullptr);
                cb(&tv);
            }
            return ESP_OK;
        }
        if (tout != portMAX_DELAY && now >= deadline) return ESP_ERR_TIMEOUT;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // extern "C"
