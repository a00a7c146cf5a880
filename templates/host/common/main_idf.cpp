// main() of a host-built ESP-IDF app: app_main() on the main thread, then the process stays up while
// the app's tasks run (the device's main task ends, the scheduler goes on).
#include <unistd.h>

#include "freertos/FreeRTOS.h"
#include "gen_sim.h"
#include "sdkconfig.h"

extern "C" void app_main(void);

int main() {
    gen_sim_tick_hz = configTICK_RATE_HZ;
    gen_sim_sntp_max_servers = CONFIG_LWIP_SNTP_MAX_SERVERS;
    gen_sim_idf_version = "v5.5.3";
    gen_sim_firmware_chip_id = CONFIG_IDF_FIRMWARE_CHIP_ID;
#ifdef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    gen_sim_app_rollback_enable = true;
#endif
#if defined(CONFIG_SECURE_SIGNED_ON_UPDATE) || defined(CONFIG_SECURE_BOOT)   /* Kconfig: SECURE_BOOT implies it */
    gen_sim_signed_on_update = true;
#endif
#ifdef CONFIG_MBEDTLS_HAVE_TIME_DATE
    gen_sim_mbedtls_have_time_date = true;
#endif
#ifdef CONFIG_NVS_ENCRYPTION
    gen_sim_nvs_encryption = true;   // nvs_flash_init() reads the nvs_keys partition and decrypts (idf_nvs.cpp)
#endif
    gen_sim_start();
    app_main();
    for (;;) pause();
}
