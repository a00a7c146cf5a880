// main() of a host-built Arduino sketch: the core's app_main/loopTask, on the main thread.
// Compiled with the firmware's own flags (so configTICK_RATE_HZ is the firmware's).
#include <chrono>
#include <thread>

#include "Arduino.h"
#include "esp_ota_ops.h"
#include "gen_sim.h"
#include "nvs_flash.h"

// The core's weak hooks (cores/esp32/esp32-hal-misc.c, under CONFIG_APP_ROLLBACK_ENABLE): a sketch may define
// them; they have C linkage there, a C file.
extern "C" bool verifyOta() __attribute__((weak));
extern "C" bool verifyOta() { return true; }
extern "C" bool verifyRollbackLater() __attribute__((weak));
extern "C" bool verifyRollbackLater() { return false; }

// initArduino()'s first steps: unless the sketch defers it, an image on trial is confirmed (or rolled back) before
// setup(); then NVS is initialised.
static void init_arduino() {
#ifdef CONFIG_APP_ROLLBACK_ENABLE
    if (!verifyRollbackLater()) {
        const esp_partition_t* running = esp_ota_get_running_partition();
        esp_ota_img_states_t ota_state;
        if (esp_ota_get_state_partition(running, &ota_state) == ESP_OK && ota_state == ESP_OTA_IMG_PENDING_VERIFY) {
            if (verifyOta()) {
                esp_ota_mark_app_valid_cancel_rollback();
            } else {
                log_e("OTA verification failed! Start rollback to the previous version ...");
                esp_ota_mark_app_invalid_rollback_and_reboot();
            }
        }
    }
#endif
    nvs_flash_init();
}

int main() {
    gen_sim_tick_hz = configTICK_RATE_HZ;
    gen_sim_sntp_max_servers = CONFIG_LWIP_SNTP_MAX_SERVERS;
    gen_sim_idf_version = "v4.4.7";
    gen_sim_core_debug_level = CORE_DEBUG_LEVEL;
    gen_sim_firmware_chip_id = CONFIG_IDF_FIRMWARE_CHIP_ID;
#ifdef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    gen_sim_app_rollback_enable = true;
#endif
#ifdef CONFIG_MBEDTLS_HAVE_TIME_DATE   /* the core's sdkconfig leaves it off (idf/sdkconfig.h) */
    gen_sim_mbedtls_have_time_date = true;
#endif
    gen_sim_start();
    init_arduino();
    setup();
    for (;;) {
        unsigned long started = micros();
        loop();
        if (micros() - started < 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}
