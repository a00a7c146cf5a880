"""What the generated firmware can use, per flavour: the limits `gen check` enforces (the spec's rules ask these)
and the firmware renders. Each limit is kept here once, beside the framework fact it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NtpServerLimit:
    count: int          # most NTP servers the flavour's SNTP client takes
    reason: str         # why, in the words `gen check` shows


NTP_SERVER_LIMITS = {
    # configTime() takes three names (cores/esp32/esp32-hal-time.c) and lwIP ignores a server index at or past
    # SNTP_MAX_SERVERS (esp-lwip src/apps/sntp/sntp.c sntp_setservername); the 2.0.17 core's prebuilt sdkconfig
    # has CONFIG_LWIP_SNTP_MAX_SERVERS=3 (esp32-arduino-lib-builder release/v4.4 configs/defconfig.common).
    "arduino": NtpServerLimit(3, "Arduino-ESP32's configTime() takes 3 servers"),
    # ESP-IDF's components/lwip/Kconfig: LWIP_SNTP_MAX_SERVERS "range 1 16"; sdkconfig.defaults sets it to the
    # number of servers the spec lists (esp_sntp_config_t.servers[] is sized by it).
    "espidf": NtpServerLimit(16, "ESP-IDF's CONFIG_LWIP_SNTP_MAX_SERVERS is at most 16"),
}


def ntp_server_limit(framework: str) -> NtpServerLimit:
    return NTP_SERVER_LIMITS[framework]
