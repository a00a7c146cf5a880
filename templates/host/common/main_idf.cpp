// main() of a host-built ESP-IDF app: app_main() on the main thread, then the process stays up while
// the app's tasks run (the device's main task ends, the scheduler goes on).
#include <unistd.h>

#include "esp_app_desc.h"
#include "esp_efuse.h"
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "gen_sim.h"
#include "nvs_sec_provider.h"
#include "sdkconfig.h"

#if SOC_HMAC_SUPPORTED && CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID < 0   /* esp-idf v5.5.3 nvs_sec_provider.c:109-111 */
#error "NVS Encryption (HMAC): Configured eFuse block (CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID) out of range!"
#endif

extern "C" void app_main(void);

int main() {
    gen_sim_tick_hz = configTICK_RATE_HZ;
    gen_sim_sntp_max_servers = CONFIG_LWIP_SNTP_MAX_SERVERS;
    gen_sim_idf_version = "v5.5.3";
    gen_sim_firmware_chip_id = CONFIG_IDF_FIRMWARE_CHIP_ID;
#ifdef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    gen_sim_app_rollback_enable = true;
#endif
#ifdef CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
    gen_sim_app_anti_rollback = true;
    gen_sim_secure_version_field_bits = CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD;
#endif
#if defined(CONFIG_SECURE_SIGNED_ON_UPDATE) || defined(CONFIG_SECURE_BOOT)   /* Kconfig: SECURE_BOOT implies it */
    gen_sim_signed_on_update = true;
#endif
#ifdef CONFIG_MBEDTLS_HAVE_TIME_DATE
    gen_sim_mbedtls_have_time_date = true;
#endif
#ifdef CONFIG_NVS_ENCRYPTION
    gen_sim_nvs_encryption = true;   // nvs_flash_init() reads the keys through the scheme and decrypts (idf_nvs.cpp)
#endif
    /* The scheme the sdkconfig chooses, registered before app_main as the device's ESP_SYSTEM_INIT_FN do
     * (esp-idf v5.5.3 components/nvs_sec_provider/nvs_sec_provider.c:84-103, 266-277). */
#if CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC
    {
        nvs_sec_config_flash_enc_t cfg = NVS_SEC_PROVIDER_CFG_FLASH_ENC_DEFAULT();
        nvs_sec_scheme_t* handle = nullptr;
        nvs_sec_provider_register_flash_enc(&cfg, &handle);
    }
#endif
#if CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC
    {
        nvs_sec_config_hmac_t cfg = NVS_SEC_PROVIDER_CFG_HMAC_DEFAULT();
        nvs_sec_scheme_t* handle = nullptr;
        nvs_sec_provider_register_hmac(&cfg, &handle);
    }
#endif
    gen_sim_start();
#ifdef CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
    /* esp-idf v5.5.3 components/efuse/src/esp_efuse_startup.c:89-95: the app rechecks its own secure version
     * before it starts (the startup fails, the chip resets). */
    if (!esp_efuse_check_secure_version(esp_app_get_description()->secure_version)) {
        ESP_LOGE("efuse_init", "Incorrect secure version of app");
        gen_sim_restart("init_efuse_secure failed");
    }
#endif
    app_main();
    for (;;) pause();
}
