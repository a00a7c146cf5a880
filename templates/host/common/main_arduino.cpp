// main() of a host-built Arduino sketch: the core's app_main/loopTask, on the main thread.
// Compiled with the firmware's own flags (so configTICK_RATE_HZ is the firmware's).
#include <chrono>
#include <thread>

#include "Arduino.h"
#include "gen_sim.h"
#include "nvs_flash.h"

int main() {
    gen_sim_tick_hz = configTICK_RATE_HZ;
    gen_sim_sntp_max_servers = CONFIG_LWIP_SNTP_MAX_SERVERS;
    gen_sim_idf_version = "v4.4.7";
    gen_sim_core_debug_level = CORE_DEBUG_LEVEL;
    gen_sim_start();
    nvs_flash_init();  // initArduino() does this before setup()
    setup();
    for (;;) {
        unsigned long started = micros();
        loop();
        if (micros() - started < 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}
