/* Simulation controls of the host runtime: the WiFi link, the TCP dialler (GEN_SIM_CONNECT_TO),
 * and process lifetime. Valid C and C++; the firmware never includes it. */
#ifndef GEN_SIM_H
#define GEN_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called once by our main() before setup()/app_main(): line-buffered stdout, signal thread, fault timers. */
void gen_sim_start(void);
/* Milliseconds and microseconds since the simulated boot. */
uint32_t gen_sim_millis(void);
uint64_t gen_sim_micros(void);
/* FreeRTOS tick rate the firmware was compiled with (set by our main()). */
extern uint32_t gen_sim_tick_hz;
/* CONFIG_LWIP_SNTP_MAX_SERVERS of the firmware's configuration (set by our main()). */
extern size_t gen_sim_sntp_max_servers;
/* The IDF version under the firmware's framework, as esp_get_idf_version() reports it (set by main()). */
extern const char* gen_sim_idf_version;
/* Arduino's CORE_DEBUG_LEVEL of the firmware (0: the core logs nothing), for the core's own log lines. */
extern int gen_sim_core_debug_level;
/* The app image rules of the firmware's configuration (set by our main()): CONFIG_IDF_FIRMWARE_CHIP_ID,
 * CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, CONFIG_SECURE_SIGNED_ON_UPDATE. */
extern uint16_t gen_sim_firmware_chip_id;
extern bool gen_sim_app_rollback_enable;
extern bool gen_sim_signed_on_update;
/* CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK and CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD (set by our main()): whether
 * esp_ota_ops compares images' secure_version with the eFuse (esp_efuse.h), and how far the eFuse field counts. */
extern bool gen_sim_app_anti_rollback;
extern uint32_t gen_sim_secure_version_field_bits;
/* CONFIG_MBEDTLS_HAVE_TIME_DATE of the firmware's configuration (set by our main()): whether the device's mbedTLS
 * checks certificate dates. Off, the host's mbedTLS (which always checks them) ignores the date flags, as the
 * device's build does. */
extern bool gen_sim_mbedtls_have_time_date;
extern bool gen_sim_nvs_encryption;     // CONFIG_NVS_ENCRYPTION: nvs_flash_init() decrypts NVS with nvs_keys
/* The simulated chip's revision, major * 100 + minor (what an image's min_chip_rev_full is checked against). */
#define GEN_SIM_CHIP_REVISION 300

/* The radio link (the access point being reachable). Listeners are told about every change. */
bool gen_sim_link_up(void);
typedef void (*gen_sim_link_listener_t)(bool up);
void gen_sim_on_link_change(gen_sim_link_listener_t listener);
/* Whether the station holds an IP address; sockets can only be opened while it does. */
void gen_sim_set_have_ip(bool have_ip);
bool gen_sim_have_ip(void);

/* TCP connect with GEN_SIM_CONNECT_TO applied. Returns a connected, non-blocking socket or -1 with
 * *err set to an errno value, or to -EAI_* style negative codes when the name does not resolve. */
int gen_sim_tcp_connect(const char* host, uint16_t port, int timeout_ms, int* err);
void gen_sim_tcp_close(int fd);
/* Resolves host the way gen_sim_tcp_connect would (mapping applied); fills a dotted IPv4 string. */
bool gen_sim_resolve_ipv4(const char* host, uint8_t out[4]);

/* Whether an SNTP server answers: yes, unless GEN_SIM_NO_TIME_SOURCE is set (to 1): then SNTP never synchronises. */
bool gen_sim_time_source_answers(void);

/* The device's MAC: GEN_SIM_MAC if set, else derived from the executable path and GEN_SIM_NVS. */
void gen_sim_mac(uint8_t mac[6]);

/* Terminates the process with code (stdout flushed). */
void gen_sim_exit(int code) __attribute__((noreturn));
/* A device reboot: log it, then exit(3). */
void gen_sim_restart(const char* why) __attribute__((noreturn));

/* Runtime diagnostics: "[sim] ..." on stdout. */
void gen_sim_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif
#endif
